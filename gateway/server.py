"""Run the gateway under uvicorn over HTTPS, with the TLS context from ``security.tls``."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from gateway.http.accesslog import install_access_log_filter
from gateway.http.header_guard import GuardedHttpToolsProtocol, HeadLimits
from gateway.logging_setup import configure_gateway_logging
from gateway.settings import GatewaySettings
from security.tls import server_context

__all__ = ["TLSConfig", "serve"]


class TLSConfig(uvicorn.Config):
    """uvicorn's config, but the SSL context is ours (TLS 1.2 floor, no compression), and
    the access log prints paths without their query string (``gateway.http.accesslog``).

    ``head_limits`` is read by :class:`~gateway.http.header_guard.GuardedHttpToolsProtocol`.
    """

    head_limits: HeadLimits = HeadLimits()
    log_format: str = "auto"  # TASKGATE_LOG_FORMAT (gateway.logging_setup)

    def configure_logging(self) -> None:
        # Runs in the supervisor and again in every worker process (uvicorn's subprocess start).
        super().configure_logging()
        level = logging.getLogger("uvicorn.error").level or logging.INFO
        configure_gateway_logging(self.log_format, level)
        install_access_log_filter()

    def load(self) -> None:
        super().load()
        if self.is_ssl and self.ssl_certfile and self.ssl_keyfile:
            self.ssl = server_context(self.ssl_certfile, self.ssl_keyfile)  # type: ignore[arg-type]


def serve(settings: GatewaySettings, *, log_level: str = "info", **extra: Any) -> None:
    """Serve ``gateway.app:app_from_env`` over HTTPS with ``settings.workers`` processes."""
    config = TLSConfig(
        "gateway.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_certfile=str(settings.tls_cert),
        ssl_keyfile=str(settings.tls_key),
        proxy_headers=False,  # client IPs come from the socket unless proxies are trusted
        server_header=False,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        http=GuardedHttpToolsProtocol,
        **extra,
    )
    config.log_format = settings.log_format
    config.head_limits = HeadLimits(
        max_bytes=settings.max_header_bytes,
        max_count=settings.max_header_count,
        timeout=settings.header_timeout,
    )
    server = uvicorn.Server(config)
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
