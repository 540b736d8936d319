"""Celery's Redis result backend, verifying Redis against the configured CA alone.

For a ``rediss://`` URL Celery's backend picks redis-py's ``SSLConnection``, whose context
also trusts the system's CA bundle (``security.tls.PinnedSSLConnection`` says why that is
too much). ``workers.app`` names this class in ``result_backend``
(``workers.celery_ext.backend:PinnedRedisBackend+rediss://...``).
"""

from __future__ import annotations

from typing import Any

import redis
from celery.backends.redis import RedisBackend

from security.tls import PinnedSSLConnection

__all__ = ["PinnedRedisBackend"]


class PinnedRedisBackend(RedisBackend):
    connection_class_ssl = PinnedSSLConnection

    def _params_from_url(self, url: str, defaults: dict[str, Any]) -> dict[str, Any]:
        # celery-types does not declare this private method of Celery's backend.
        params: dict[str, Any] = super()._params_from_url(url, defaults)  # type: ignore[misc]
        if params.get("connection_class") is redis.SSLConnection:
            params["connection_class"] = PinnedSSLConnection
        return params
