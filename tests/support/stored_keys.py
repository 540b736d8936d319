"""What a test left in Redis: every key but the workers' liveness keys and the audit log.

The session's running worker keeps writing its heartbeat and its count of tasks in
progress, and a refused command is audited, so a test that checks nothing was stored looks
past them.
"""

from __future__ import annotations

import redis
import redis.asyncio

from tests.support.replies import as_bytes
from workers.contract.keys import AUDIT_STREAM, WORKER_ACTIVE_PREFIX, WORKERS


def stored_keys(client: redis.Redis) -> list[bytes]:
    """Every key in Redis except the liveness keys the session's running worker keeps
    writing and the audit log (a refused command is audited)."""
    skipped = (AUDIT_STREAM.encode(), WORKER_ACTIVE_PREFIX.encode())
    keys = [as_bytes(key) for key in client.keys("*")]
    return [key for key in keys if key != WORKERS.encode() and not key.startswith(skipped)]
