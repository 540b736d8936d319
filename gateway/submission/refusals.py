"""What a submission's refusal leaves: its holdings freed, its audit record, its counts.

:func:`gateway.submission.stages.run_stages` calls :func:`refused` for a refusal - an
:class:`~gateway.http.problems.ApiError` or a domain error
(:class:`~security.errors.TaskgateError`) - and :func:`failed` for any other error: the
request's Idempotency-Key and the queue slot its check reserved are freed, and the refusal
is audited and counted by the error's row in :data:`gateway.http.errors.ERRORS` (the row its
exception handler answers from). :func:`admit` verifies the client token before the
stages and audits its refusal. The routes audit nothing themselves.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.requests import Request

from gateway.deps import client_claims
from gateway.http.errors import rule_for
from gateway.http.problems import ApiError
from gateway.state import GatewayState
from gateway.submission.context import Submission
from gateway.submission.idempotency import release
from gateway.submission.ratelimit import limit_headers
from security.audit.actions import AuditAction
from security.errors import TaskgateError, TokenError
from workers.contract.catalogue import TaskSpec
from workers.contract.wire import GLOBAL_QUEUED, queued_key

__all__ = ["admit", "failed", "refused"]

log = logging.getLogger("taskgate.gateway")


async def admit(request: Request, state: GatewayState, spec: TaskSpec) -> Submission:
    """The context of ``request`` to submit ``spec``, from its verified client token.

    A token refused here (before any stage: the stages need the token's client) is
    audited as ``auth.refused`` and goes on to its exception handler.
    """
    request_id = str(getattr(request.state, "request_id", "-"))
    try:
        claims = client_claims(request, state)
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
    return Submission(
        client_id=claims.sub,
        jti=claims.jti,
        scopes=claims.scopes,
        spec=spec,
        raw_body=await request.body(),
        idempotency_key=request.headers.get("idempotency-key"),
        request_id=request_id,
        claims=claims,
    )


async def refused(ctx: Submission, state: GatewayState, exc: ApiError | TaskgateError) -> None:
    """Free what the request took, audit the refusal, count it (by the error's row)."""
    rule = rule_for(type(exc))
    await _release_idempotency(state, ctx)
    await _release_slot(state, ctx)
    await state.record(
        actor=f"client:{ctx.client_id}",
        action=rule.action,
        outcome="denied",
        target=ctx.spec.name,
        reason=rule.audit_reason(exc),
        request_id=ctx.request_id,
    )
    if isinstance(exc, ApiError) and ctx.limits and exc.status != 429:
        exc.headers = {**limit_headers(ctx.limits), **(exc.headers or {})}
    state.metrics.refused(ctx.spec.name, exc, ctx.limits)


async def failed(ctx: Submission, state: GatewayState, exc: Exception) -> None:
    """An error that is no refusal: free the key; if the decision was audited as allowed
    before the enqueue failed, say so."""
    await _release_idempotency(state, ctx)
    if ctx.sealed:
        with contextlib.suppress(Exception):
            await state.record(
                actor=f"client:{ctx.client_id}",
                action=AuditAction.TASK_SUBMIT,
                outcome="error",
                target=ctx.task_id,
                reason=f"not enqueued: {type(exc).__name__}",
                request_id=ctx.request_id,
            )


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
