"""taskgate's subclasses of Celery, kombu and billiard internals. They override
non-public methods, so they hold only for the release ranges pinned in ``pyproject.toml``
(``tests/unit/workers/test_celery_version.py`` fails, naming the range, on any other).

Modules:

* :mod:`workers.celery_ext.backend`: Celery's Redis result backend, verifying Redis against the
  configured CA alone.
* :mod:`workers.celery_ext.consumer`: A Celery consumer that refuses bad messages without
  logging their bodies, and audits.
* :mod:`workers.celery_ext.pool`: Celery's prefork pool, keeping a half-transferred message
  across a broker reconnect.
* :mod:`workers.celery_ext.request`: The request class of every taskgate task: a sealed body is
  decoded once, not twice, and a declared task's success acknowledges its message in the same
  write as its result.
* :mod:`workers.celery_ext.transport`: kombu's Redis transport, hardened for a Redis restart
  under a consuming worker.
"""

from __future__ import annotations

__all__ = [
    "backend",
    "consumer",
    "pool",
    "request",
    "transport",
]
