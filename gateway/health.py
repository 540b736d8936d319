"""Liveness (`/healthz`) and readiness (`/readyz`): Redis over TLS, and workers that beat.

Readiness never sends work through the queue: a ping behind a backlog waits for every task
ahead of it, so the gateway would report itself unready exactly under load. It reads the
workers' heartbeats instead (``workers.heartbeat`` writes them, one beat per worker every
few seconds): one PING and one ZCOUNT per check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.http.problems import problem
from gateway.schemas import Liveness, Ready
from workers.contract.heartbeat import live_workers

__all__ = ["Readiness", "router"]
router = APIRouter(tags=["health"])


class Readiness:
    """Checks Redis and the workers' heartbeats; an outcome is reused for ``cache_seconds``.

    The check is single-flight and briefly cached: concurrent probes share the one check in
    flight, so a flood of unauthenticated probes costs Redis two cheap commands per
    ``cache_seconds`` per process, not two per probe. It fails closed: a heartbeat set that
    cannot be read means not ready.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        lapse: float,
        timeout: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lapse <= 0 or timeout <= 0 or cache_seconds < 0:
            raise ValueError("readiness needs a positive lapse and timeout")
        self._redis = client
        self._lapse = lapse
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, dict[str, Any]] = (0.0, {})
        self._inflight: asyncio.Future[dict[str, Any]] | None = None

    async def check(self) -> dict[str, Any]:
        """Each check's outcome (``"ok"`` or a short reason, no addresses) and ``live_workers``."""
        until, outcome = self._cached
        if time.monotonic() < until:
            return dict(outcome)
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._check_and_remember())
        # shield: a probe whose client went away does not cancel the others' check
        return dict(await asyncio.shield(self._inflight))

    async def _check_and_remember(self) -> dict[str, Any]:
        try:
            outcome = await self._check()
            self._cached = (time.monotonic() + self._cache_seconds, outcome)
            return outcome
        finally:
            self._inflight = None

    async def _check(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=self._timeout)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            return {
                "redis": f"unreachable over TLS ({type(exc).__name__})",
                "workers": "not checked",
            }
        try:
            count = await asyncio.wait_for(
                live_workers(self._redis, self._clock(), self._lapse), timeout=self._timeout
            )
            live = int(count)
        except (TimeoutError, redis.RedisError, OSError, TypeError, ValueError) as exc:
            return {"redis": "ok", "workers": f"heartbeats unreadable ({type(exc).__name__})"}
        if live < 1:
            return {
                "redis": "ok",
                "workers": f"no worker heartbeat within {self._lapse:g}s",
                "live_workers": 0,
            }
        return {"redis": "ok", "workers": "ok", "live_workers": live}


# Public probes: no credentials (overrides the document-wide bearer requirement).
PUBLIC: dict[str, Any] = {"security": []}


@router.get(
    "/healthz",
    summary="Liveness: the process is up",
    response_model=None,
    responses={200: {"model": Liveness, "description": "Up"}},
    openapi_extra=PUBLIC,
)
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests; touches no dependency."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers over TLS and at least one worker's heartbeat is recent",
    response_model=None,
    responses={
        200: {"model": Ready, "description": "Ready"},
        503: {"description": "A check failed", "content": {"application/problem+json": {}}},
    },
    openapi_extra=PUBLIC,
)
async def readyz(request: Request) -> Any:
    """200 when every check passes; otherwise 503 problem+json naming the failed checks."""
    readiness: Readiness = request.app.state.readiness
    outcome = await readiness.check()
    live = outcome.pop("live_workers", None)
    checks: dict[str, str] = {name: str(value) for name, value in outcome.items()}
    extra: dict[str, Any] = {} if live is None else {"live_workers": live}
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks, **extra})
    detail = "; ".join(f"{name}: {checks[name]}" for name in failed)
    return problem(
        503,
        "Not ready",
        detail,
        kind="not-ready",
        instance=str(request.url.path),
        headers={"Retry-After": "5"},
        request_id=str(getattr(request.state, "request_id", "-")),
        checks=checks,
        **extra,
    )
