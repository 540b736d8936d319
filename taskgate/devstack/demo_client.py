"""The local stack's demo client: one per state folder, reused across `taskgate up` runs.

A run takes the client the last run recorded in ``stack.json`` if it still exists, is
enabled and its secret still holds; ``--reset-demo-client`` gives it a new secret (the old
one and every token issued with it stop working). Otherwise it registers a new one. The
secret goes to the 0600 ``stack.json`` only, never to the terminal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from gateway.stores.clients import ClientRegistry
from security.keystore import load_keys
from security.tls import RedisTLS
from taskgate.client.stackfile import StackFileError, StackInfo

__all__ = ["DEMO_SCOPES", "DemoClient", "ensure_demo_client", "previous_demo"]

DEMO_SCOPES = "tasks:submit:* tasks:read audit:read"


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    secret: str  # written to stack.json only
    note: str  # what happened, for the summary (no secret)

    def __repr__(self) -> str:
        return f"DemoClient(client_id={self.client_id!r}, note={self.note!r})"


def previous_demo(state_dir: Path) -> tuple[str, str] | None:
    """The demo client id and secret a previous run left in ``stack.json``, if readable."""
    try:
        info = StackInfo.load(state_dir)
    except StackFileError:
        return None
    if info.demo_client_id is None or info.demo_client_secret is None:
        return None
    return info.demo_client_id, info.demo_client_secret.get_secret_value()


def ensure_demo_client(
    tls: RedisTLS, keys_dir: Path, previous: tuple[str, str] | None, *, reset: bool
) -> DemoClient:
    """Reuse, rotate or register the demo client, as the operator (``tls``, ``keys_dir``)."""

    async def run() -> DemoClient:
        client = tls.async_client()
        try:
            keys = load_keys(keys_dir, role="operator").state
            return await _reuse_or_create(ClientRegistry(client, keys), previous, reset=reset)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def _reuse_or_create(
    registry: ClientRegistry, previous: tuple[str, str] | None, *, reset: bool
) -> DemoClient:
    if previous is not None:
        client_id, secret = previous
        record = await registry.get(client_id)
        if record is not None and not record.disabled:
            if reset:
                new = await registry.rotate_secret(client_id)
                return DemoClient(client_id, new, f"demo client {client_id}: new secret")
            if await registry.authenticate(client_id, secret) is not None:
                return DemoClient(
                    client_id, secret, f"demo client {client_id}: reused from the last run"
                )
            new = await registry.rotate_secret(client_id)
            return DemoClient(
                client_id, new, f"demo client {client_id}: its secret had changed, new secret"
            )
    record, secret = await registry.create("demo", DEMO_SCOPES)
    return DemoClient(record.client_id, secret, f"demo client {record.client_id}: new")
