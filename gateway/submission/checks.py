"""Submission stage 2, round trip 1: the token's client and revocations (stored state,
checked against its MACs), rate limits, backpressure and idempotency in one script call.

Split from :mod:`gateway.submission.stages` (which lists the stages); see there for the whole path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gateway.http.problems import ApiError, ClientQueueFull, GlobalQueueFull, RateLimited
from gateway.state import GatewayState
from gateway.stores.checks import (
    CLIENT_READ,
    REVOCATION_READ,
    REVOCATIONS_KEY,
    check_principal,
    refuse_stored,
    revoked_jti_key,
)
from gateway.submission.idempotency import IDEMPOTENCY_TTL, pending_record
from gateway.submission.ratelimit import evaluate, hit_ttl, parse_window, window_key
from gateway.submission.script_batcher import LuaScript
from security.errors import StoredStateError, TokenError
from security.lua import fill_fields, lua_script
from workers.contract.keys import client_key as client_record_key
from workers.contract.wire import GLOBAL_QUEUED, queued_key

if TYPE_CHECKING:
    from gateway.submission.context import Submission

__all__ = ["IDEMPOTENCY_TTL", "IdempotentReplay", "RateLimited", "check_and_count"]


class IdempotentReplay(Exception):
    """The same Idempotency-Key and body were accepted before: answer with that task."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


# How long a queue slot reserved by the check stays counted without its commit (a gateway
# that died in between): the reservation's score falls out of the backpressure window then.
RESERVATION_SECONDS = 60

# What it does, its KEYS and ARGV: the comment at the top of submit_check.lua. The fields
# it reads are filled in from gateway.stores.checks, so the script and the MAC checks agree.
_CHECK = LuaScript(
    fill_fields(
        lua_script("gateway.submission", "submit_check.lua"),
        CLIENT_READ=CLIENT_READ,
        REVOCATION_READ=REVOCATION_READ,
    )
)


async def check_and_count(ctx: Submission, state: GatewayState) -> Submission:
    """Round trip 1: revoked token, client record (MAC, disabled, generation), rate
    limits, backpressure, idempotency."""
    try:
        limits = await state.client_limits(ctx.client_id)
    except StoredStateError as exc:
        raise await refuse_stored(
            state,
            exc,
            actor=f"client:{ctx.client_id}",
            target=f"client:{ctx.client_id}",
            request_id=ctx.request_id,
        ) from None
    if limits is None:
        raise TokenError("client unknown", reason="client_disabled")
    client_window = parse_window(limits.rate_limit)
    task_window = parse_window(ctx.spec.rate_limit)
    client_key, client_reset = window_key("client", ctx.client_id, client_window, ctx.now)
    task_key_, task_reset = window_key(f"task:{ctx.spec.name}", ctx.client_id, task_window, ctx.now)
    horizon = ctx.now - state.settings.envelope_ttl
    keys = [
        revoked_jti_key(ctx.jti),
        client_record_key(ctx.client_id),
        client_key,
        task_key_,
        queued_key(ctx.client_id),
        GLOBAL_QUEUED,
        REVOCATIONS_KEY,
    ]
    args: list[Any] = [
        hit_ttl(client_window.seconds),
        hit_ttl(task_window.seconds),
        horizon,
        # The reservation counts from the horizon on, for RESERVATION_SECONDS; the commit
        # moves the task id to its submission time.
        repr(horizon + RESERVATION_SECONDS),
        "" if ctx.spec.best_effort else ctx.task_id,
        limits.max_queued,
        state.settings.max_queued_global,
        client_window.limit,
        task_window.limit,
    ]
    pending = ""
    if ctx.idem_redis_key is not None:
        keys.append(ctx.idem_redis_key)
        pending = pending_record(ctx.body_hash, ctx.spec.name, ctx.task_id)
        args += [pending, state.leases.lease_ms]
    replies = await state.scripts.call(_CHECK, keys, args)
    revoked, client, client_count, task_count, mine, everyone, earlier = replies[:7]
    revocations, reserved = replies[7:]
    ctx.reserved = bool(reserved)
    if ctx.idem_redis_key is not None and earlier is None:
        ctx.idem_pending = pending  # ours: renewed while in flight, dropped when answered
        state.leases.hold(ctx.idem_redis_key, pending)
    if ctx.claims is not None:
        await check_principal(
            state, ctx.claims, client, revocations, revoked, request_id=ctx.request_id
        )
    else:  # pragma: no cover - the route always passes the verified claims
        raise TokenError("no verified claims", reason="no_claims")
    ctx.limits = [
        evaluate("client", int(client_count), client_window, client_reset),
        evaluate("task", int(task_count), task_window, task_reset),
    ]
    if not all(s.allowed for s in ctx.limits):
        raise RateLimited(ctx.limits)
    # Before the queue caps: a replay adds nothing to a queue, and a client retrying after
    # a lost answer must learn its task was accepted, not that the queue is full.
    if ctx.idem_redis_key is not None and earlier is not None:
        _existing_idempotency(ctx, earlier)
    if int(mine) >= limits.max_queued:
        raise ClientQueueFull(int(mine), limits.max_queued)
    if int(everyone) >= state.settings.max_queued_global:
        raise GlobalQueueFull()
    return ctx


def _existing_idempotency(ctx: Submission, raw: bytes | str) -> None:
    ctx.idem_redis_key = None  # not ours: never delete or overwrite it
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    if "task" in doc and doc["task"] != ctx.spec.name:
        raise ApiError(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used for another task",
            kind="idempotency-mismatch",
        )
    if doc.get("body") != ctx.body_hash:
        raise ApiError(
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
            kind="idempotency-mismatch",
        )
    if doc.get("state") == "done" and isinstance(doc.get("task_id"), str):
        raise IdempotentReplay(doc["task_id"])
    raise ApiError(
        409,
        "Request in progress",
        "a request with this Idempotency-Key is still being processed",
        kind="idempotency-conflict",
        headers={"Retry-After": "1"},
    )
