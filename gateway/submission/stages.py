"""The submission path: one ordered list of stages, each ``await stage(ctx, state) -> ctx``.

A stage stops the run only by raising a typed error; the runner (:func:`run_stages`) audits
and counts the refusal by the error's row in :data:`gateway.http.errors.ERRORS`, whose
exception handlers map it to problem+json. Two Redis round trips in all, each one Lua
script call: :func:`check_and_count` (:mod:`gateway.submission.checks`: the client record and the
revocation list, checked against their state MACs; rate limits, backpressure,
idempotency) and :func:`commit` (the ``allowed`` audit record together with the vault
entries, task record, indexes, idempotency record and broker message, atomically).
Everything between them is CPU: validation, leak guard, secret swap, seal.

Both round trips are shared under load: concurrent checks go out as one pipeline
(:mod:`gateway.submission.script_batcher`) and concurrent commits as one audit-append script call
(:mod:`gateway.submission.audit_batcher`, group commit). redis-py's per-call cost was the largest
item of the gateway's CPU per submission (``make bench``); a script also makes the checks
atomic. The scripts address the client's and the task's keys together, so those keys
must live on one Redis node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Final

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from gateway.http.field_errors import validation_errors
from gateway.http.problems import ApiError, InvalidPayload
from gateway.state import GatewayState
from gateway.stores.task_records import signed_fields
from gateway.submission.checks import IdempotentReplay, check_and_count
from gateway.submission.context import Stage, Submission
from gateway.submission.idempotency import IDEMPOTENCY_TTL
from gateway.submission.publisher import OutgoingTask, encode_message
from gateway.submission.refusals import failed, refused
from security import leakguard
from security.audit import AuditRecord, Write
from security.audit.actions import AuditAction
from security.audit.writes import LEASE_LOST, held
from security.errors import TaskgateError
from security.sanitise import loads_limited
from security.vault import swap_secrets
from workers.contract.enqueue import Enqueue, NotEnqueuedError, aenqueue, undo_partial_enqueue
from workers.contract.keys import idempotency_key
from workers.contract.states import TaskState
from workers.contract.wire import (
    ALL_TASKS,
    GLOBAL_QUEUED,
    owner_index,
    queued_key,
    replay_bucket,
    replay_bucket_expiry,
    task_key,
)

log = logging.getLogger("taskgate.gateway")

# Built once: on Python 3.11 an enum member read off its class costs ~80 ns each time.
_QUEUED: Final = TaskState.QUEUED
_TASK_SUBMIT: Final = AuditAction.TASK_SUBMIT

__all__ = [
    "BEST_EFFORT_STAGES",
    "IDEMPOTENCY_KEY",
    "STAGES",
    "IdempotentReplay",
    "Stage",
    "Submission",
    "run_stages",
]

# Visible ASCII, inner spaces allowed, 1-255 characters (HTTP strips outer whitespace anyway).
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?")


async def authorize(ctx: Submission, state: GatewayState) -> Submission:
    """The token must carry the task's scope (tasks:submit:<name> or tasks:submit:*)."""
    from gateway.stores.clients import scope_allows

    if not scope_allows(ctx.scopes, ctx.spec.scope):
        raise ApiError(
            403, "Forbidden", f"the token lacks the scope {ctx.spec.scope}", kind="forbidden"
        )
    if ctx.idempotency_key is not None:
        key = ctx.idempotency_key
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(
                400,
                "Bad request",
                "Idempotency-Key must be 1-255 visible ASCII characters",
                kind="bad-request",
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        ctx.idem_redis_key = idempotency_key(ctx.client_id, digest)
    ctx.body_hash = hashlib.sha256(ctx.raw_body).hexdigest()
    return ctx


async def validate(ctx: Submission, state: GatewayState) -> Submission:
    """Size/depth limits, then the task's schema (unknown fields refused), sanitising."""
    spec = ctx.spec
    document = loads_limited(ctx.raw_body, max_bytes=spec.max_payload_bytes)
    if not isinstance(document, dict):
        raise InvalidPayload("the payload must be a JSON object")
    try:
        model = spec.schema.model_validate(document)
    except ValidationError as exc:
        raise InvalidPayload(
            "the payload does not match the task's schema",
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
    # Issued at ctx.now: the record names this seal (seal_iat, seal_exp) by these times.
    ctx.sealed = state.codec.encode(
        ctx.task_id, ctx.spec.name, [], {"payload": ctx.swapped.payload}, now=ctx.now
    )
    return ctx


def enqueue_job(ctx: Submission, state: GatewayState) -> Enqueue:
    """What accepting the submission writes (``workers.contract.enqueue``): vault entries,
    the message's copy for the sweeper (``workers.sweeper``), task record, indexes,
    idempotency record, and last the broker message (a write Redis refused stops the rest:
    nothing half-queued runs)."""
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
            copied=True,  # the copy is written with it
            request_id=ctx.request_id,
        )
    )
    ttl, record_ttl = str(settings.envelope_ttl), str(settings.envelope_ttl + settings.result_ttl)
    vault = ctx.swapped.entries if ctx.swapped is not None else ()
    seal_exp = ctx.now + state.codec.ttl  # what seal() wrote into the envelope
    signed = signed_fields(
        state.keys.state,
        ctx.task_id,
        owner=ctx.client_id,
        name=spec.name,
        seal_iat=ctx.now,
        seal_exp=seal_exp,
        replays=0,
    )
    record = (
        *(item for pair in signed.items() for item in pair),
        *("state", _QUEUED, "submitted_at", f"{ctx.now:.6f}", "queue", spec.queue),
        *("attempts", "0"),
    )
    bucket = replay_bucket(seal_exp)
    task, owner, tid, now = (
        task_key(ctx.task_id),
        owner_index(ctx.client_id),
        ctx.task_id,
        repr(ctx.now),
    )
    # With an Idempotency-Key: nothing is written unless the reservation is still this
    # request's (or lapsed untaken): a request paused past its lease while a retry took the
    # key must not enqueue a second task under it.
    before: list[Write] = []
    if ctx.idem_redis_key is not None and ctx.idem_pending is not None:
        before.append(held(ctx.idem_redis_key, ctx.idem_pending))
    before += [Write("SET", (entry.redis_key,), (entry.blob, "EX", ttl)) for entry in vault]
    after = [
        Write("HSET", (task,), record),
        Write("EXPIRE", (task,), (record_ttl,)),
        Write("ZADD", (owner,), (now, tid)),
        Write("EXPIRE", (owner,), (record_ttl,)),
        Write("ZADD", (ALL_TASKS,), (now, tid)),
        Write("ZADD", (queued_key(ctx.client_id),), (now, tid)),
        Write("ZADD", (GLOBAL_QUEUED,), (now, tid)),
        # The final-marker bucket this seal's run writes to exists, expiring, before any
        # worker can see the message (workers only add to buckets that exist).
        Write("HSETNX", (bucket,), ("-", "0")),
        Write("EXPIREAT", (bucket,), (str(replay_bucket_expiry(seal_exp)),)),
    ]
    if ctx.idem_redis_key is not None:
        done = json.dumps(
            {"state": "done", "body": ctx.body_hash, "task": spec.name, "task_id": tid}
        )
        after.append(Write("SET", (ctx.idem_redis_key,), (done, "EX", str(IDEMPOTENCY_TTL))))
    return Enqueue(
        _allowed(ctx),
        tid,
        spec.queue,
        message,
        copy_ttl=settings.envelope_ttl,
        before=before,
        after=after,
    )


async def commit(ctx: Submission, state: GatewayState) -> Submission:
    """Round trip 2: the decision's audit record and the enqueue in ONE atomic script call,
    shared under load with other requests' records (group commit). No unaudited work, no
    audited-but-lost acceptance; an unreachable Redis means nothing was accepted (503)."""
    if ctx.swapped is None:  # a stage list without ``swap``: never audit an empty enqueue
        raise NotEnqueuedError("not_swapped")
    try:
        await aenqueue(state.audit.record, enqueue_job(ctx, state))
    except NotEnqueuedError as exc:
        if exc.reason != LEASE_LOST:
            await _undo_partial_enqueue(ctx, state)
            raise
        raise _lease_lost(ctx, state) from None
    return ctx


def _lease_lost(ctx: Submission, state: GatewayState) -> ApiError:
    """The 409 for an atomic call that wrote nothing because another request holds the
    Idempotency-Key now (its reservation is never deleted by this one)."""
    if ctx.idem_redis_key is not None:
        state.leases.drop(ctx.idem_redis_key)
    ctx.idem_redis_key = ctx.idem_pending = None  # not ours: never delete it
    return ApiError(
        409,
        "Request in progress",
        "a request with this Idempotency-Key is still being processed",
        kind="idempotency-conflict",
        headers={"Retry-After": "1"},
    )


async def _undo_partial_enqueue(ctx: Submission, state: GatewayState) -> None:
    """Redis refused a write (memory, a key of the wrong type): the broker message was not
    pushed; the refused task is never re-queued (best effort: the client gets an error)."""
    try:
        await undo_partial_enqueue(state.redis, ctx.task_id, ctx.client_id)
    except Exception:  # noqa: BLE001 - never mask the refusal itself
        log.warning("could not clean up after a refused enqueue of %s", ctx.task_id)


def _allowed(ctx: Submission) -> AuditRecord:
    return AuditRecord.make(
        actor=f"client:{ctx.client_id}",
        action=_TASK_SUBMIT,
        outcome="allowed",
        target=ctx.task_id,
        reason=ctx.spec.name,
        request_id=ctx.request_id,
    )


def best_effort_writes(ctx: Submission, state: GatewayState) -> list[Write]:
    """What accepting a best-effort submission writes: its task record (on the
    ``best-effort`` queue, no broker message, no vault) indexed for its owner, and the
    idempotency record - only while this request still holds its key."""
    signed = signed_fields(
        state.keys.state,
        ctx.task_id,
        owner=ctx.client_id,
        name=ctx.spec.name,
        seal_iat=None,
        seal_exp=None,
        replays=0,
    )
    record = (
        *(item for pair in signed.items() for item in pair),
        *("state", _QUEUED, "submitted_at", f"{ctx.now:.6f}", "queue", "best-effort"),
        *("attempts", "0"),
    )
    task, tid, now = task_key(ctx.task_id), ctx.task_id, repr(ctx.now)
    writes: list[Write] = []
    if ctx.idem_redis_key is not None and ctx.idem_pending is not None:
        writes.append(held(ctx.idem_redis_key, ctx.idem_pending))
    writes += [
        Write("HSET", (task,), record),
        Write("EXPIRE", (task,), (str(state.settings.result_ttl),)),
        Write("ZADD", (owner_index(ctx.client_id),), (now, tid)),
        Write("ZADD", (ALL_TASKS,), (now, tid)),
    ]
    if ctx.idem_redis_key is not None:
        done = json.dumps(
            {"state": "done", "body": ctx.body_hash, "task": ctx.spec.name, "task_id": tid}
        )
        writes.append(Write("SET", (ctx.idem_redis_key,), (done, "EX", str(IDEMPOTENCY_TTL))))
    return writes


async def record_best_effort(ctx: Submission, state: GatewayState) -> Submission:
    """Best-effort lane: the decision's audit record and the task record in one atomic
    script call, as on the broker lane; the run follows the reply."""
    refused = await state.audit.record(_allowed(ctx), best_effort_writes(ctx, state))
    if refused == LEASE_LOST:
        raise _lease_lost(ctx, state)
    if refused is not None:
        raise NotEnqueuedError(refused)
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
    commit,
]


async def run_stages(
    ctx: Submission, state: GatewayState, stages: list[Stage] = STAGES
) -> Submission:
    """Run ``stages`` in order; a stage stops the run only by raising.

    A refusal (:class:`ApiError` or a domain error) frees what the request took, is
    audited and counted by its row in :data:`gateway.http.errors.ERRORS`
    (:func:`gateway.submission.refusals.refused`), and goes on to its exception handler; so
    does any other error, after :func:`gateway.submission.refusals.failed`.
    """
    try:
        for stage in stages:
            ctx = await stage(ctx, state)
    except IdempotentReplay:
        raise
    except (ApiError, TaskgateError) as exc:
        await refused(ctx, state, exc)
        raise
    except Exception as exc:
        await failed(ctx, state, exc)
        raise
    finally:
        if ctx.idem_redis_key is not None:
            state.leases.drop(ctx.idem_redis_key)
    return ctx
