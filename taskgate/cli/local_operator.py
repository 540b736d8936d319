"""The local stack's CLI operator: one named admin per state folder, for the commands run
next to `taskgate up`.

`taskgate up` keeps the operator ``local`` (admin role) and its credential in the
operator's role folder (``<state>/roles/operator/operator.credential``, 0600), beside the
operator's Redis password and keys, which already allow everything this credential does.
A run reuses the credential while it still authenticates, else gives ``local`` a new one.
Commands that find the stack (:mod:`taskgate.cli.stack_discovery`) use that file when no
``TASKGATE_OPERATOR_TOKEN``/``_FILE`` is set, so their changes are audited as ``local``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.stores.operators import OperatorRegistry
from security.errors import StoredStateError
from security.keystore import load_keys
from security.tls import RedisTLS
from taskgate.devstack.redis_users import write_private
from workers.contract.keys import operator_key

__all__ = ["CREDENTIAL_FILE", "LOCAL_OPERATOR", "ensure_local_operator"]

LOCAL_OPERATOR = "local"
CREDENTIAL_FILE = "operator.credential"


def ensure_local_operator(tls: RedisTLS, keys_dir: Path, token_file: Path) -> str:
    """Reuse or (re)issue the ``local`` operator's credential in ``token_file``; return a
    note for the summary (no secret)."""

    async def run() -> str:
        client = tls.async_client()
        try:
            registry = OperatorRegistry(client, load_keys(keys_dir, role="operator").state)
            held = token_file.read_text().strip() if token_file.is_file() else ""
            try:
                current = await registry.authenticate(held) if held else None
            except StoredStateError:
                current = None
            if current is not None and current.name == LOCAL_OPERATOR and current.is_admin:
                return f"CLI operator {LOCAL_OPERATOR}: reused"
            if await client.exists(operator_key(LOCAL_OPERATOR)):
                _, credential = await registry.renew(LOCAL_OPERATOR)
            else:
                _, credential = await registry.add(LOCAL_OPERATOR, "admin")
            write_private(token_file, credential + "\n")
            return f"CLI operator {LOCAL_OPERATOR}: new credential"
        finally:
            await client.aclose()

    return asyncio.run(run())
