"""The local stack that ``taskgate up`` starts: a TLS-only redis-server and its ACL users,
per-role state folders, the gateway and a worker, an SMTP sink, the demo client.

Modules:

* :mod:`taskgate.devstack.demo_client`: The local stack's demo client: one per state folder,
  reused across `taskgate up` runs.
* :mod:`taskgate.devstack.procs`: Child processes for `taskgate up` and the test harness: start,
  watch, stop cleanly.
* :mod:`taskgate.devstack.redis_server`: Start a TLS-only `redis-server` (plain port off, client
  certificates required, ACL users).
* :mod:`taskgate.devstack.redis_tls`: The TLS profile of the redis-server that `taskgate up` and
  the tests start.
* :mod:`taskgate.devstack.redis_users`: The Redis ACL users of a local stack: their passwords on
  disk and the ACL file.
* :mod:`taskgate.devstack.role_dirs`: Per-role state folders: each process of `taskgate up`
  reads its own folder only.
* :mod:`taskgate.devstack.smtp_sink`: A local SMTP sink for ``taskgate up``: accepts mail over
  STARTTLS and writes ``.eml`` files.
* :mod:`taskgate.devstack.stack`: The whole local stack that `taskgate up`
  (:mod:`taskgate.devstack.up`) starts and stops.
* :mod:`taskgate.devstack.stack_files`: What `taskgate up` writes and prints: ``stack.json``,
  private files, the summary.
* :mod:`taskgate.devstack.up`: `taskgate up`: the whole local stack
  (:mod:`taskgate.devstack.stack`) in one command, stopped cleanly by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

__all__ = [
    "demo_client",
    "procs",
    "redis_server",
    "redis_tls",
    "redis_users",
    "role_dirs",
    "smtp_sink",
    "stack",
    "stack_files",
    "up",
]
