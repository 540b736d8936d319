"""What the gateway keeps in Redis and acts on: API clients, operators, task records,
revocations, dead letters, and the checks of stored records on the request path.

Modules:

* :mod:`gateway.stores.checks`: The gateway's checks of stored state on the request path: client
  record, token generation, revoked tokens. Each refusal of a record that fails its MAC is
  audited (``state.refused``, with the record and the reason) and answered as a token refusal.
* :mod:`gateway.stores.client_records`: A client record as the registry stores it: its fields,
  their MAC, and the :class:`Client` read from them.
* :mod:`gateway.stores.client_rules`: The registry's rules: client ids, names, scopes and limits
  (no Redis, no framework).
* :mod:`gateway.stores.clients`: The API client registry: who may ask for a token, with which
  scopes and limits.
* :mod:`gateway.stores.deadletters`: Dead-letter operations for admins (HTTP and CLI): list,
  inspect, requeue, purge.
* :mod:`gateway.stores.operators`: Named operators: people who run taskgate, each with a role
  and a credential of their own.
* :mod:`gateway.stores.revocation`: Revoking a task: one atomic decision on the state Redis
  holds.
* :mod:`gateway.stores.task_records`: The gateway's fields of a task record, MAC'd: who owns the
  task and which seal is current.
* :mod:`gateway.stores.task_stats`: Per-task statistics over a recent window: success rate,
  p50/p95 run time, failure types.
"""

from __future__ import annotations

__all__ = [
    "checks",
    "client_records",
    "client_rules",
    "clients",
    "deadletters",
    "operators",
    "revocation",
    "task_records",
    "task_stats",
]
