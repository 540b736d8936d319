"""The gateway's routes, one module per area of the HTTP API.

Modules:

* :mod:`gateway.routes.admin`: ``/v1/admin/...``: clients, token revocation, tasks, dead
  letters, keys, stats, audit.
* :mod:`gateway.routes.admin_tasks`: ``/v1/admin/tasks`` and ``/v1/admin/dead-letters``: every
  task's metadata, revocation, and the dead letters (inspect, requeue, purge). Never a payload
  or a result.
* :mod:`gateway.routes.audit`: ``/v1/admin/audit`` and ``/v1/admin/audit/verify`` (the admin
  token, or ``audit:read``).
* :mod:`gateway.routes.metrics`: ``GET /metrics``: the admin token, or a scraper whose address
  is in ``TASKGATE_METRICS_ALLOW``.
* :mod:`gateway.routes.submit`: ``POST /v1/tasks/{name}``: one handler per task of the
  catalogue, over the stage list.
* :mod:`gateway.routes.tasks`: Client task routes: catalogue, submit, status, list, cancel.
* :mod:`gateway.routes.token`: ``POST /v1/token``: the OAuth2 client-credentials grant (RFC 6749
  section 4.4).
"""

from __future__ import annotations

__all__ = [
    "admin",
    "admin_tasks",
    "audit",
    "metrics",
    "submit",
    "tasks",
    "token",
]
