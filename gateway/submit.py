"""The submission path: one ordered list of stages, each ``await stage(ctx, state) -> ctx``.

A stage stops the run only by raising a typed error; the route audits the refusal and
maps it to problem+json. Two Redis round trips in all: :func:`check_and_count` (revocation,
disabled flag, rate limits, backpressure, idempotency - one pipeline) and :func:`enqueue`
(vault entries, task record, indexes, the broker message, the idempotency record - one
pipeline). Everything between them is CPU: validation, leak guard, secret swap, seal.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from gateway.errors import ApiError, validation_errors
from gateway.publisher import OutgoingTask, encode_message
from gateway.ratelimit import LimitState, add_hits, evaluate, parse_window, window_key
from gateway.state import GatewayState
from security import leakguard
from security.errors import TokenError
from security.sanitise import loads_limited
from security.vault import SwapResult, swap_secrets, write_entries
from workers.catalogue import TaskSpec
from workers.wire import ALL_TASKS, GLOBAL_QUEUED, owner_index, queued_key, task_key

__all__ = ["BEST_EFFORT_STAGES", "STAGES", "IdempotentReplay", "Submission", "run_stages"]

IDEMPOTENCY_TTL = 24 * 3600
_IDEM_KEY_MAX = 255


@dataclass
class Submission:
    """The context that flows through the stages."""

    client_id: str
    jti: str
    scopes: frozenset[str]
    spec: TaskSpec
    raw_body: bytes
    idempotency_key: str | None
    request_id: str
    now: float = field(default_factory=time.time)
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    limits: list[LimitState] = field(default_factory=list)
    body_hash: str = ""
    idem_redis_key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)
    swapped: SwapResult | None = field(default=None, repr=False)
    sealed: bytes = field(default=b"", repr=False)


class IdempotentReplay(Exception):
    """The same Idempotency-Key and body were accepted before: answer with that task."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


Stage = Callable[[Submission, GatewayState], Awaitable[Submission]]


async def authorize(ctx: Submission, state: GatewayState) -> Submission:
    """The token must carry the task's scope (tasks:submit:<name> or tasks:submit:*)."""
    from gateway.clients import scope_allows

    if not scope_allows(ctx.scopes, ctx.spec.scope):
        raise ApiError(
            403, "Forbidden", f"the token lacks the scope {ctx.spec.scope}", kind="forbidden"
        )
    if ctx.idempotency_key is not None:
        key = ctx.idempotency_key
        if not key or len(key) > _IDEM_KEY_MAX or not key.isprintable():
            raise ApiError(
                400,
                "Bad request",
                "Idempotency-Key must be 1-255 printable characters",
                kind="bad-request",
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        ctx.idem_redis_key = f"tg:idem:{ctx.client_id}:{digest}"
    ctx.body_hash = hashlib.sha256(ctx.raw_body).hexdigest()
    return ctx


async def check_and_count(ctx: Submission, state: GatewayState) -> Submission:
    """Round trip 1: revoked token, disabled client, rate limits, backpressure, idempotency."""
    limits = await state.client_limits(ctx.client_id)
    if limits is None:
        raise TokenError("client unknown", reason="client_disabled")
    client_window = parse_window(limits.rate_limit)
    task_window = parse_window(ctx.spec.rate_limit)
    client_key, client_reset = window_key("client", ctx.client_id, client_window, ctx.now)
    task_key_, task_reset = window_key(f"task:{ctx.spec.name}", ctx.client_id, task_window, ctx.now)
    horizon = ctx.now - state.settings.envelope_ttl
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.exists(f"tg:revoked:jti:{ctx.jti}")
        pipe.hget(f"tg:client:{ctx.client_id}", "disabled")
        add_hits(pipe, [(client_key, client_window.seconds), (task_key_, task_window.seconds)])
        pipe.zcount(queued_key(ctx.client_id), horizon, "+inf")
        pipe.zcount(GLOBAL_QUEUED, horizon, "+inf")
        if ctx.idem_redis_key is not None:
            pending = json.dumps({"state": "pending", "body": ctx.body_hash})
            pipe.set(ctx.idem_redis_key, pending, nx=True, get=True, ex=IDEMPOTENCY_TTL)
        replies = await pipe.execute()
    revoked, disabled, client_count, _, task_count, _, mine, everyone = replies[:8]
    if revoked:
        raise TokenError("token revoked", reason="revoked")
    if disabled not in (b"0", "0"):
        raise TokenError("client disabled", reason="client_disabled")
    ctx.limits = [
        evaluate("client", int(client_count), client_window, client_reset),
        evaluate("task", int(task_count), task_window, task_reset),
    ]
    if not all(s.allowed for s in ctx.limits):
        raise RateLimited(ctx.limits)
    if int(mine) >= limits.max_queued:
        raise ApiError(
            429,
            "Too many queued tasks",
            f"this client already has {int(mine)} tasks waiting (cap {limits.max_queued})",
            kind="backpressure",
            headers={"Retry-After": "5"},
        )
    if int(everyone) >= state.settings.max_queued_global:
        raise ApiError(
            503,
            "Queue full",
            "the gateway is at its queued-task capacity; try again shortly",
            kind="backpressure",
            headers={"Retry-After": "10"},
        )
    if ctx.idem_redis_key is not None and replies[8] is not None:
        _existing_idempotency(ctx, replies[8])
    return ctx


def _existing_idempotency(ctx: Submission, raw: bytes | str) -> None:
    ctx.idem_redis_key = None  # not ours: never delete or overwrite it
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
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


class RateLimited(ApiError):
    """429 with RateLimit-* and Retry-After."""

    def __init__(self, states: list[LimitState]) -> None:
        from gateway.ratelimit import limit_headers

        which = ", ".join(s.name for s in states if not s.allowed)
        super().__init__(
            429,
            "Too many requests",
            f"rate limit exceeded ({which})",
            kind="rate-limited",
            headers=limit_headers(states),
        )


async def validate(ctx: Submission, state: GatewayState) -> Submission:
    """Size/depth limits, then the task's schema (unknown fields refused), sanitising."""
    spec = ctx.spec
    document = loads_limited(ctx.raw_body, max_bytes=spec.max_payload_bytes)
    if not isinstance(document, dict):
        raise ApiError(
            422, "Invalid payload", "the payload must be a JSON object", kind="invalid-payload"
        )
    try:
        model = spec.schema.model_validate(document)
    except ValidationError as exc:
        raise ApiError(
            422,
            "Invalid payload",
            "the payload does not match the task's schema",
            kind="invalid-payload",
            errors=validation_errors(exc.errors(include_input=False)),
        ) from None
    ctx.payload = _reveal(model)
    return ctx


def _reveal(model: BaseModel) -> dict[str, Any]:
    """The model as JSON data with secret values in clear (they go to the vault next)."""
    shown = model.model_dump(mode="json")
    python = model.model_dump(mode="python")

    def walk(js: Any, py: Any) -> Any:
        if isinstance(py, SecretStr | SecretBytes):
            value = py.get_secret_value()
            return value.decode() if isinstance(value, bytes) else value
        if isinstance(py, dict) and isinstance(js, dict):
            return {k: walk(js[k], py[k]) for k in js}
        if isinstance(py, list | tuple) and isinstance(js, list):
            return [walk(j, p) for j, p in zip(js, py, strict=True)]
        return js

    result = walk(shown, python)
    if not isinstance(result, dict):  # pragma: no cover - a model dumps to a dict
        raise TypeError("model did not dump to an object")
    return result


async def guard_leaks(ctx: Submission, state: GatewayState) -> Submission:
    """Refuse secret-looking values in fields the catalogue does not mark secret."""
    leakguard.check(ctx.payload, secret_paths=ctx.spec.secret_fields)
    return ctx


async def swap(ctx: Submission, state: GatewayState) -> Submission:
    """Replace every secret with a reference; the values go to the vault, sealed."""
    ctx.swapped = swap_secrets(
        ctx.payload, ctx.spec.secret_fields, task_id=ctx.task_id, keys=state.keys.vault
    )
    ctx.payload = {}
    return ctx


async def seal_message(ctx: Submission, state: GatewayState) -> Submission:
    """Encrypt, bind to task id and name, sign with the gateway key."""
    if ctx.swapped is None:  # pragma: no cover - swap always runs first
        raise RuntimeError("secrets were not swapped")
    ctx.sealed = state.codec.encode(
        ctx.task_id, ctx.spec.name, [], {"payload": ctx.swapped.payload}
    )
    return ctx


async def enqueue(ctx: Submission, state: GatewayState) -> Submission:
    """Round trip 2: vault entries, task record, indexes, broker message, idempotency."""
    spec = ctx.spec
    settings = state.settings
    message = encode_message(
        OutgoingTask(
            task_id=ctx.task_id,
            name=spec.name,
            body=ctx.sealed,
            content_type=state.codec.content_type,
            queue=spec.queue,
            soft_time_limit=spec.soft_time_limit,
            time_limit=spec.time_limit,
        )
    )
    record_ttl = settings.envelope_ttl + settings.result_ttl
    async with state.redis.pipeline(transaction=True) as pipe:
        if ctx.swapped is not None:
            write_entries(pipe, ctx.swapped.entries, settings.envelope_ttl)
        pipe.hset(
            task_key(ctx.task_id),
            mapping={
                "name": spec.name,
                "owner": ctx.client_id,
                "state": "queued",
                "submitted_at": f"{ctx.now:.6f}",
                "queue": spec.queue,
                "attempts": "0",
            },
        )
        pipe.expire(task_key(ctx.task_id), record_ttl)
        pipe.zadd(owner_index(ctx.client_id), {ctx.task_id: ctx.now})
        pipe.zadd(ALL_TASKS, {ctx.task_id: ctx.now})
        pipe.expire(owner_index(ctx.client_id), record_ttl)
        pipe.zadd(queued_key(ctx.client_id), {ctx.task_id: ctx.now})
        pipe.zadd(GLOBAL_QUEUED, {ctx.task_id: ctx.now})
        pipe.lpush(spec.queue, message)
        if ctx.idem_redis_key is not None:
            done = {"state": "done", "body": ctx.body_hash, "task_id": ctx.task_id}
            pipe.set(ctx.idem_redis_key, json.dumps(done), ex=IDEMPOTENCY_TTL)
        await pipe.execute()
    return ctx


async def record_best_effort(ctx: Submission, state: GatewayState) -> Submission:
    """Best-effort lane: only a task record (no broker, no vault); the run follows the reply."""
    ttl = state.settings.result_ttl
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            task_key(ctx.task_id),
            mapping={
                "name": ctx.spec.name,
                "owner": ctx.client_id,
                "state": "queued",
                "submitted_at": f"{ctx.now:.6f}",
                "queue": "best-effort",
                "attempts": "0",
            },
        )
        pipe.expire(task_key(ctx.task_id), ttl)
        pipe.zadd(owner_index(ctx.client_id), {ctx.task_id: ctx.now})
        pipe.zadd(ALL_TASKS, {ctx.task_id: ctx.now})
        if ctx.idem_redis_key is not None:
            done = {"state": "done", "body": ctx.body_hash, "task_id": ctx.task_id}
            pipe.set(ctx.idem_redis_key, json.dumps(done), ex=IDEMPOTENCY_TTL)
        await pipe.execute()
    return ctx


BEST_EFFORT_STAGES: list[Stage] = [
    authorize,
    check_and_count,
    validate,
    guard_leaks,
    record_best_effort,
]

STAGES: list[Stage] = [
    authorize,
    check_and_count,
    validate,
    guard_leaks,
    swap,
    seal_message,
    enqueue,
]


async def run_stages(
    ctx: Submission, state: GatewayState, stages: list[Stage] = STAGES
) -> Submission:
    """Run ``stages`` in order; a stage stops the run only by raising."""
    for stage in stages:
        ctx = await stage(ctx, state)
    return ctx
