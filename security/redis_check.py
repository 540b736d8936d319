"""Start-up check: is this process connected to Redis as an all-powerful user?

A process that can run admin commands (``CONFIG``, ``FLUSHALL``, ``ACL``...) is connected as
Redis's ``default`` user or another unrestricted one: a compromise of that process is a
compromise of every key. ``serve`` and ``worker`` call :func:`warn_if_admin` once at start
and log one warning naming the fix. The probe, ``CONFIG GET maxmemory``, only reads.
"""

from __future__ import annotations

import logging
from typing import Final

import redis

__all__ = ["ADMIN_FIX", "admin_user", "warn_if_admin"]

ADMIN_FIX: Final = "load the ACL lines from `taskgate redis acl`"
_log = logging.getLogger("taskgate.redis")


def admin_user(client: redis.Redis) -> str | None:
    """The user name if this connection may run admin commands, else ``None``."""
    try:
        client.config_get("maxmemory")
    except redis.exceptions.NoPermissionError:
        return None
    try:
        return str(client.acl_whoami())
    except redis.exceptions.ResponseError:
        return "default"


def warn_if_admin(client: redis.Redis, process: str) -> bool:
    """Log one warning if ``client`` is connected as an all-powerful user; ``True`` if so.

    Redis unreachable is not this check's business (readiness reports it): no warning.
    """
    try:
        user = admin_user(client)
    except (redis.RedisError, OSError):
        return False
    if user is None:
        return False
    _log.warning(
        "%s is connected to Redis as %r, a user that can run admin commands (CONFIG, "
        "FLUSHALL, ACL, ...): %s and give each process its role's user",
        process,
        user,
        ADMIN_FIX,
    )
    return True
