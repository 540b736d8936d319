"""The FastAPI application, built by :func:`create_app` from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import health
from gateway.codec import SealedCodec
from gateway.settings import GatewaySettings
from security.keystore import KeyRing
from workers.wire import DEFAULT_QUEUE

__all__ = ["app_from_env", "create_app"]


def create_app(settings: GatewaySettings, *, keys: KeyRing | None = None) -> FastAPI:
    """Build the gateway for ``settings``; connections open in the lifespan.

    Keys load with the gateway role (including the Ed25519 signing key) unless given.
    """
    ring = keys if keys is not None else settings.key_ring("gateway")
    codec = SealedCodec(ring, ttl=settings.envelope_ttl)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = settings.redis.async_client(
            socket_timeout=5, socket_connect_timeout=3, health_check_interval=25
        )
        app.state.redis = client
        app.state.readiness = health.Readiness(
            client,
            codec,
            queue=DEFAULT_QUEUE,
            timeout=settings.ready_timeout,
            cache_seconds=settings.ready_cache_seconds,
        )
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="taskgate",
        version="0.1.0",
        summary="Security-hardened task gateway",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = ring
    app.state.codec = codec
    app.include_router(health.router)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from ``TASKGATE_*`` at worker start, not at import."""
    return create_app(GatewaySettings())
