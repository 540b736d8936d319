"""`taskgate serve`: the HTTPS gateway."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from gateway.settings import GatewaySettings
from security.config import load_settings
from security.errors import ConfigError
from security.redis_check import warn_if_admin

__all__ = ["serve_command"]


def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (TASKGATE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTPS port (TASKGATE_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="uvicorn worker processes.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the gateway over HTTPS (never plain HTTP) with the configured certificate."""
    from gateway.server import serve

    overrides = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
    }
    try:
        settings = load_settings(GatewaySettings, **overrides)
        settings.key_ring("gateway")  # refuse missing or exposed keys before binding the port
        redis_tls = settings.redis  # and a missing or exposed Redis password
        if settings.sentry_dsn is not None and importlib.util.find_spec("sentry_sdk") is None:
            raise ConfigError(  # checked here: each uvicorn process starts Sentry itself
                "TASKGATE_SENTRY_DSN",
                "is set but sentry-sdk is not installed",
                "pip install 'taskgate[sentry]'",
            )
    except ConfigError as exc:
        typer.echo(f"taskgate serve: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    with redis_tls.client(socket_timeout=5, socket_connect_timeout=5) as client:
        warn_if_admin(client, "the gateway")
    serve(settings, log_level=log_level)
