"""Liveness (`/healthz`) and readiness (`/readyz`): Redis over TLS, and a worker that answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import redis.asyncio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.codec import BodyCodec
from gateway.problems import problem
from gateway.publisher import OutgoingTask, encode_message, result_key
from security.errors import TaskgateError
from workers.wire import PING_TASK

__all__ = ["FAILURE_CACHE_SECONDS", "Readiness", "router"]
router = APIRouter(tags=["health"])


# How long a failed worker ping is believed: a burst of probes while no worker answers
# queues one ping a second at most, not one per probe.
FAILURE_CACHE_SECONDS = 1.0


class Readiness:
    """Checks Redis and the workers; a worker success is trusted for ``cache_seconds``.

    The worker check is single-flight: concurrent probes share the one ping in flight
    (unauthenticated callers cannot make the gateway queue a ping each), and a failure is
    believed for :data:`FAILURE_CACHE_SECONDS`.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        codec: BodyCodec,
        *,
        queue: str,
        timeout: float,
        cache_seconds: float,
    ) -> None:
        self._redis = client
        self._codec = codec
        self._queue = queue
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._workers_ok_until = 0.0
        self._failure: tuple[float, str] = (0.0, "")
        self._inflight: asyncio.Future[str] | None = None

    async def check(self) -> dict[str, str]:
        """Each check's outcome: ``"ok"`` or a short reason (no secrets, no addresses)."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=min(self._timeout, 2.0))
            checks["redis"] = "ok"
        except (TimeoutError, redis.RedisError, OSError) as exc:
            checks["redis"] = f"unreachable over TLS ({type(exc).__name__})"
            checks["workers"] = "not checked"
            return checks
        checks["workers"] = await self._workers()
        return checks

    async def _workers(self) -> str:
        now = time.monotonic()
        if now < self._workers_ok_until:
            return "ok"
        until, outcome = self._failure
        if now < until:
            return outcome
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._ping_and_remember())
        # shield: a probe whose client went away does not cancel the others' ping
        return await asyncio.shield(self._inflight)

    async def _ping_and_remember(self) -> str:
        try:
            outcome = await self._ping_worker()
            if outcome == "ok":
                self._workers_ok_until = time.monotonic() + self._cache_seconds
            else:
                self._failure = (time.monotonic() + FAILURE_CACHE_SECONDS, outcome)
            return outcome
        finally:
            self._inflight = None

    async def _ping_worker(self) -> str:
        task_id = str(uuid.uuid4())
        # An unanswered ping must not run much later: it expires shortly after the wait.
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._timeout + 5)
        body = self._codec.encode(task_id, PING_TASK, [], {})
        message = OutgoingTask(
            task_id=task_id,
            name=PING_TASK,
            body=body,
            content_type=self._codec.content_type,
            queue=self._queue,
            expires=expires.isoformat(),
        )
        key = result_key(task_id)
        try:
            await self._redis.lpush(self._queue, encode_message(message))
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                raw = await self._redis.get(key)
                if raw is not None:
                    await self._redis.delete(key)
                    doc = self._codec.decode_result(
                        task_id, raw if isinstance(raw, bytes) else raw.encode()
                    )
                    return "ok" if doc.get("status") == "SUCCESS" else "worker failed the ping"
                await asyncio.sleep(0.05)
        except (redis.RedisError, OSError, ValueError, TaskgateError) as exc:
            return f"ping failed ({type(exc).__name__})"
        return f"no worker answered {PING_TASK} within {self._timeout:g}s"


# Public probes: no credentials (overrides the document-wide bearer requirement).
PUBLIC: dict[str, Any] = {"security": []}


@router.get("/healthz", summary="Liveness: the process is up", openapi_extra=PUBLIC)
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests; touches no dependency."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers over TLS and a worker answers system.ping",
    responses={503: {"description": "A check failed", "content": {"application/problem+json": {}}}},
    openapi_extra=PUBLIC,
)
async def readyz(request: Request) -> Any:
    """200 when every check passes; otherwise 503 problem+json naming the failed checks."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.check()
    failed = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks})
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
    )
