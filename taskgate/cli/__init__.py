"""The ``taskgate`` console script (:mod:`taskgate.cli.main`), its command groups and their
plumbing: output, the operator acting, finding the local stack.

Modules:

* :mod:`taskgate.cli.audit`: `taskgate audit verify|export|tail|checkpoint`: prove and read the
  audit log.
* :mod:`taskgate.cli.audit_search`: `taskgate audit search`: the audit log filtered by time,
  actor, action, outcome, target.
* :mod:`taskgate.cli.clients`: `taskgate clients add|list|disable|enable|rotate-secret`: the API
  client registry.
* :mod:`taskgate.cli.dlq`: `taskgate dlq list|inspect|requeue|purge`: the dead-letter store,
  audited under the name of the operator ``TASKGATE_OPERATOR_TOKEN`` names (requeue and purge
  need admin).
* :mod:`taskgate.cli.flower`: `taskgate flower`: Flower over HTTPS, behind basic auth, reading
  the TLS Redis as ``monitor`` (``taskgate.flower_app`` says what it can and cannot show).
* :mod:`taskgate.cli.keys`: `taskgate keys init|list|rotate|retire|export`: the key ring in the
  state folder.
* :mod:`taskgate.cli.local_operator`: The local stack's CLI operator: one named admin per state
  folder, for the commands run next to `taskgate up`.
* :mod:`taskgate.cli.main`: The one console script, `taskgate`. Commands live next to what they
  drive.
* :mod:`taskgate.cli.operator_auth`: The CLI as a named operator: who is acting, may they, and
  the audit record of what they did.
* :mod:`taskgate.cli.operators`: `taskgate operators add|list|revoke`: named operators (admin or
  auditor), audited.
* :mod:`taskgate.cli.output`: How every CLI command speaks: a readable table by default, exact
  JSON with ``--json``, errors on stderr with a non-zero exit code, the exit codes in every
  ``--help``.
* :mod:`taskgate.cli.redis_acl`: `taskgate redis acl`: print the Redis ACL lines of taskgate's
  roles.
* :mod:`taskgate.cli.stack_discovery`: The CLI finds the stack: commands that talk to Redis or
  the gateway use the state folder's ``stack.json`` when no explicit setting is given, and say
  on stderr which stack that is.
* :mod:`taskgate.cli.stats`: `taskgate stats`: per task over a recent window - success rate,
  p50/p95 run time, failure types - from the workers' per-minute metric counts in Redis
  (``gateway.stores.task_stats``).
* :mod:`taskgate.cli.tasks`: `taskgate submit|status|wait|tasks|cancel|catalog`: the client API
  from the command line.
* :mod:`taskgate.cli.tokens`: `taskgate token`: print an access token for a client, for scripts.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "app",
    "audit",
    "audit_search",
    "clients",
    "dlq",
    "flower",
    "keys",
    "local_operator",
    "main",
    "operator_auth",
    "operators",
    "output",
    "redis_acl",
    "stack_discovery",
    "stats",
    "tasks",
    "tokens",
]


def __getattr__(name: str) -> Any:
    """``app``, the console script, imported on first use: ``taskgate.cli:app`` stays a valid
    entry point, and importing one of the CLI's plumbing modules does not load every command."""
    if name == "app":
        from taskgate.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
