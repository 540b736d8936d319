"""``POST /v1/tasks/{name}``: one handler per task of the catalogue, over the stage list.

The handler takes only the ``Request`` (every FastAPI dependency would be resolved per
request, on the hot path); :mod:`gateway.fastlane` answers it without FastAPI's routing.
A refusal is audited and frees what the request had taken: its Idempotency-Key and the
queue slot its check reserved.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from gateway.best_effort import run_best_effort
from gateway.deps import state_of, verified_claims
from gateway.errors import ApiError
from gateway.idempotency import release
from gateway.ratelimit import limit_headers
from gateway.state import GatewayState
from gateway.submit import BEST_EFFORT_STAGES, STAGES, IdempotentReplay, Submission, run_stages
from security.audit_actions import AuditAction
from security.errors import InputRejectedError, TaskgateError, TokenError
from workers.catalogue import TaskSpec
from workers.contract.states import TaskState
from workers.wire import GLOBAL_QUEUED, queued_key

__all__ = ["submit_route"]

log = logging.getLogger("taskgate.gateway")


def submit_route(spec: TaskSpec) -> Any:
    """The POST handler for one task of the catalogue (broker lane or best-effort lane)."""
    stages = BEST_EFFORT_STAGES if spec.best_effort else STAGES

    # Only the Request: every FastAPI dependency is resolved per request, on the hot path.
    async def submit(request: Request) -> Any:
        state = state_of(request)
        request_id = str(getattr(request.state, "request_id", "-"))
        try:
            claims = await verified_claims(request, state)
        except TokenError as exc:
            await state.record(
                actor="anonymous",
                action=AuditAction.AUTH_REFUSED,
                outcome="denied",
                target=spec.name,
                reason=exc.reason,
                request_id=request_id,
            )
            raise
        ctx = Submission(
            client_id=claims.sub,
            jti=claims.jti,
            scopes=claims.scopes,
            spec=spec,
            raw_body=await request.body(),
            idempotency_key=request.headers.get("idempotency-key"),
            request_id=request_id,
            claims=claims,
        )
        actor = f"client:{claims.sub}"
        started = time.monotonic()
        try:
            ctx = await run_stages(ctx, state, stages)
        except IdempotentReplay as replay:
            state.metrics.submissions(spec.name, "idempotent_replay")
            return _accepted(replay.task_id, ctx, replayed=True)
        except (ApiError, TaskgateError) as exc:
            await _release_idempotency(state, ctx)
            await _release_slot(state, ctx)
            reason = exc.kind if isinstance(exc, ApiError) else exc.reason
            if isinstance(exc, InputRejectedError) and exc.field:
                reason = f"{reason} at {exc.field}"
            action = (
                AuditAction.RATE_LIMIT_HIT
                if getattr(exc, "status", 0) == 429
                else AuditAction.TASK_SUBMIT
            )
            await state.record(
                actor=actor,
                action=action,
                outcome="denied",
                target=spec.name,
                reason=reason,
                request_id=request_id,
            )
            if isinstance(exc, ApiError) and ctx.limits and exc.status != 429:
                exc.headers = {**limit_headers(ctx.limits), **(exc.headers or {})}
            state.metrics.refused(spec.name, reason.split(" ", 1)[0], exc, ctx.limits)
            raise
        except Exception as exc:
            await _release_idempotency(state, ctx)
            if ctx.sealed:  # audited as allowed, then the enqueue failed: say so
                with contextlib.suppress(Exception):
                    await state.record(
                        actor=actor,
                        action=AuditAction.TASK_SUBMIT,
                        outcome="error",
                        target=ctx.task_id,
                        reason=f"not enqueued: {type(exc).__name__}",
                        request_id=request_id,
                    )
            raise
        finally:
            if ctx.idem_redis_key is not None:
                state.leases.drop(ctx.idem_redis_key)
        state.metrics.accepted(
            spec.name, spec.queue, time.monotonic() - started, sent=not spec.best_effort
        )
        response = _accepted(ctx.task_id, ctx, replayed=False)
        if spec.best_effort:  # runs after the reply is sent, like BackgroundTasks
            response.background = BackgroundTask(
                run_best_effort, state, spec, ctx.task_id, ctx.payload
            )
            ctx.payload = {}
        return response

    submit.__name__ = f"submit_{spec.name.replace('.', '_').replace('-', '_')}"
    return submit


def _accepted(task_id: str, ctx: Submission, *, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/tasks/{task_id}", **limit_headers(ctx.limits)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    body = {"id": task_id, "status": TaskState.QUEUED, "links": {"self": f"/v1/tasks/{task_id}"}}
    return JSONResponse(body, status_code=202, headers=headers)


async def _release_idempotency(state: GatewayState, ctx: Submission) -> None:
    """A refused request frees its Idempotency-Key so a corrected retry can use it (only
    while the reservation is still its own: a lapsed one may be another request's now)."""
    if ctx.idem_redis_key is None or ctx.idem_pending is None:
        return
    state.leases.drop(ctx.idem_redis_key)
    try:
        await release(state.scripts, ctx.idem_redis_key, ctx.idem_pending)
    except Exception:  # noqa: BLE001 - the key expires anyway; never mask the original error
        log.warning("could not release an idempotency key")


async def _release_slot(state: GatewayState, ctx: Submission) -> None:
    """A request refused before its commit gives back the queue slot its check reserved."""
    if not ctx.reserved:
        return
    try:
        async with state.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queued_key(ctx.client_id), ctx.task_id)
            pipe.zrem(GLOBAL_QUEUED, ctx.task_id)
            await pipe.execute()
    except Exception:  # noqa: BLE001 - it stops counting by itself; never mask the refusal
        log.warning("could not release a queue slot")
