"""``/v1/admin/...``: clients, token revocation, tasks, dead letters, keys, stats, audit.

Admin routes take a named operator (``gateway.operators``): reads take either role,
changes need the admin role (an auditor gets 403, audited); the audit routes also take a
client token with ``audit:read``. Every admin call is audited (who, what, target, outcome).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway import deadletters, stored
from gateway.admin_bodies import NewClient, Revocation, new_client_model
from gateway.client_rules import check_known_tasks
from gateway.clients import ClientError
from gateway.deps import Admin, Reader, RequestId, State
from gateway.errors import ApiError
from gateway.revocation import revoke
from gateway.routes_audit import add_audit_routes
from gateway.routes_tasks import COMMON_ERRORS, PROBLEM, task_view
from gateway.state import GatewayState
from gateway.task_stats import MAX_WINDOW, read_window
from security.errors import StoredStateError, TokenError
from security.tokens import verify_token
from workers.contract.keys import AUDIT_STREAM, CLIENTS_SET
from workers.deadletters import DLQ_INDEX
from workers.wire import (
    ALL_TASKS,
    GLOBAL_QUEUED,
    TASK_ID,
    task_key,
)

__all__ = ["build_admin_router"]

_JTI = re.compile(r"^[0-9a-f]{32}$")


def _client_error(exc: ClientError) -> ApiError:
    status = {"unknown_client": 404, "conflict": 409}.get(exc.reason, 422)
    return ApiError(status, "Client request refused", str(exc), kind=f"client-{exc.reason}")


async def _audit(
    state: GatewayState,
    actor: str,
    action: str,
    target: str,
    rid: str,
    *,
    outcome: str = "ok",
    reason: str = "",
) -> None:
    await state.record(
        actor=actor, action=action, outcome=outcome, target=target, reason=reason, request_id=rid
    )


async def _refused(
    state: GatewayState, exc: StoredStateError, target: str, rid: str, actor: str = "admin"
) -> ApiError:
    await stored.audit_refused(state, exc, actor=actor, target=target, request_id=rid)
    return stored.conflict(exc)


def build_admin_router(task_names: Iterable[str] = ()) -> APIRouter:
    """Every admin route, grouped by what it manages (``task_names``: the catalogue's)."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=COMMON_ERRORS)
    _client_routes(router, new_client_model(task_names))
    for add in (_task_routes, _dead_letter_routes, _ops_routes, add_audit_routes):
        add(router)
    return router


def _client_routes(router: APIRouter, body_model: type[NewClient]) -> None:
    @router.get("/clients", summary="List clients (never secrets)")
    async def list_clients(who: Reader, state: State, rid: RequestId) -> dict[str, Any]:
        clients, refused = await state.clients.scan()
        for client_id, exc in refused:  # listed apart, never shown as if trusted
            await _refused(state, exc, f"client:{client_id}", rid, who)
        await _audit(state, who, "admin.clients.list", "clients", rid)
        return {"items": [c.public() for c in clients], "refused": [cid for cid, _ in refused]}

    async def create_client(
        body: NewClient, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            check_known_tasks(body.scopes, (spec.name for spec in state.catalogue))
            client, secret = await state.clients.create(
                body.name, body.scopes, rate_limit=body.rate_limit, max_queued=body.max_queued
            )
        except ClientError as exc:
            await _audit(
                state,
                who,
                "admin.clients.create",
                body.name,
                rid,
                outcome="denied",
                reason=exc.reason,
            )
            raise _client_error(exc) from None
        await _audit(state, who, "admin.clients.create", client.client_id, rid)
        return {**client.public(), "client_secret": secret}

    # The body's model is built for this catalogue: set as a real type, not a string.
    create_client.__annotations__["body"] = body_model
    router.add_api_route(
        "/clients",
        create_client,
        methods=["POST"],
        status_code=201,
        summary="Create a client; the secret is shown once",
    )

    @router.post(
        "/clients/{client_id}/disable", summary="Disable a client (its tokens stop working)"
    )
    async def disable_client(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            client = await state.clients.disable(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await _refused(state, exc, f"client:{client_id}", rid, who) from None
        await _audit(state, who, "admin.clients.disable", client_id, rid)
        return client.public()

    @router.post("/clients/{client_id}/enable", summary="Enable a client again")
    async def enable_client(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            client = await state.clients.enable(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await _refused(state, exc, f"client:{client_id}", rid, who) from None
        await _audit(state, who, "admin.clients.enable", client_id, rid)
        return client.public()

    @router.post(
        "/clients/{client_id}/rotate-secret", summary="New secret; the old one stops working"
    )
    async def rotate_client_secret(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            secret = await state.clients.rotate_secret(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await _refused(state, exc, f"client:{client_id}", rid, who) from None
        await _audit(state, who, "admin.clients.rotate_secret", client_id, rid)
        return {"client_id": client_id, "client_secret": secret}


def _task_routes(router: APIRouter) -> None:
    @router.post("/tokens/revoke", summary="Revoke an access token by jti or by the token")
    async def revoke_token(
        body: Revocation, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        ttl = state.settings.token_ttl + 60
        if body.token is not None:
            try:
                claims = verify_token(body.token, keys=state.keys.token, policy=state.token_policy)
            except TokenError as exc:
                raise ApiError(
                    422,
                    "Token not revocable",
                    f"the token is not valid here ({exc.reason})",
                    kind="bad-token",
                ) from None
            jti = claims.jti
            ttl = max(60, int(claims.exp - time.time()) + 60)
        elif body.jti is not None and _JTI.fullmatch(body.jti):
            jti = body.jti
        else:
            raise ApiError(422, "Invalid request", "give jti or token", kind="invalid-request")
        try:
            await stored.revoke_jti(state, jti, until=int(time.time()) + ttl)
        except StoredStateError as exc:
            raise await _refused(state, exc, "revocations", rid, who) from None
        except ClientError as exc:
            raise _client_error(exc) from None
        await _audit(state, who, "admin.tokens.revoke", jti, rid)
        return {"jti": jti, "revoked": True, "until": int(time.time()) + ttl}

    @router.get("/tasks", summary="All tasks, newest first")
    async def list_all_tasks(  # noqa: PLR0917 - FastAPI dependencies and query parameters
        who: Reader,
        state: State,
        rid: RequestId,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,20}$")] = None,
    ) -> dict[str, Any]:
        upper: float | str = f"({before}" if before is not None else "+inf"
        rows: list[Any] = await state.redis.zrevrangebyscore(
            ALL_TASKS, upper, "-inf", start=0, num=limit, withscores=True
        )
        async with state.redis.pipeline(transaction=False) as pipe:
            for member, _score in rows:
                pipe.hgetall(task_key(_text(member)))
            records = await pipe.execute()
        items = []
        for (member, _score), raw in zip(rows, records, strict=True):
            if raw:
                record = await stored.trusted_record(
                    state, _text(member), raw, actor=who, request_id=rid
                )
                if record is None:  # refused and audited; never shown as trusted
                    continue
                view = {**task_view(_text(member), record), "owner": record.get("owner")}
                if status is None or view["status"] == status:
                    items.append(view)
        await _audit(state, who, "admin.tasks.list", "tasks", rid)
        return {"items": items, "next": rows[-1][1] if len(rows) == limit else None}

    @router.get("/tasks/{task_id}", summary="Inspect a task's metadata (never its payload)")
    async def inspect_task(
        task_id: str, who: Reader, state: State, rid: RequestId
    ) -> dict[str, Any]:
        record = await _task_record(state, task_id, rid, who)
        await _audit(state, who, "admin.tasks.inspect", task_id, rid)
        return {
            **task_view(task_id, record),
            "owner": record.get("owner"),
            "queue": record.get("queue"),
        }

    @router.post(
        "/tasks/{task_id}/revoke",
        status_code=202,
        summary="Revoke a task: a queued one never runs, a running cancellable one is stopped",
        responses={409: {"description": "Finished, or running and not cancellable", **PROBLEM}},
    )
    async def revoke_task(task_id: str, who: Admin, state: State, rid: RequestId) -> dict[str, Any]:
        status = await revoke(state, task_id, await _task_record(state, task_id, rid, who))
        await _audit(state, who, "admin.tasks.revoke", task_id, rid)
        return {"id": task_id, "status": status}

    @router.post(
        "/tasks/{task_id}/retry", status_code=202, summary="Run a dead-lettered task again"
    )
    async def retry_task(task_id: str, who: Admin, state: State, rid: RequestId) -> dict[str, Any]:
        return await _requeue(state, task_id, rid, who, action="admin.tasks.retry")


def _dead_letter_routes(router: APIRouter) -> None:
    @router.get("/dead-letters", summary="Dead-lettered tasks, newest first")
    async def list_dead_letters(
        who: Reader,
        state: State,
        rid: RequestId,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    ) -> dict[str, Any]:
        items, cursor = await deadletters.list_dead(state.redis, limit=limit, before=before)
        await _audit(state, who, "admin.dlq.list", "dead-letters", rid)
        return {"items": [d.public() for d in items], "next": cursor}

    @router.get("/dead-letters/{task_id}", summary="A dead letter's metadata")
    async def inspect_dead_letter(
        task_id: str, who: Reader, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            dead = await deadletters.inspect(state.redis, task_id)
        except deadletters.DeadLetterError as exc:
            raise ApiError(exc.status, "Dead letter", exc.detail, kind="dead-letter") from None
        await _audit(state, who, "admin.dlq.inspect", task_id, rid)
        return dead.public()

    @router.post(
        "/dead-letters/{task_id}/requeue",
        status_code=202,
        summary="Requeue (fresh attempts, capped replays)",
    )
    async def requeue_dead_letter(
        task_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        return await _requeue(state, task_id, rid, who, action="admin.dlq.requeue")

    @router.delete("/dead-letters/{task_id}", summary="Purge a dead letter and its secrets")
    async def purge_dead_letter(
        task_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            dead = await deadletters.purge(state.redis, task_id)
        except deadletters.DeadLetterError as exc:
            raise ApiError(exc.status, "Dead letter", exc.detail, kind="dead-letter") from None
        await _audit(state, who, "admin.dlq.purge", task_id, rid)
        return {**dead.public(), "purged": True}


def _ops_routes(router: APIRouter) -> None:
    @router.get("/keys", summary="Key ids in use (never material)")
    async def list_keys(who: Reader, state: State, rid: RequestId) -> dict[str, Any]:
        ring = state.keys
        out = {
            str(keys.purpose): [{"kid": k.kid, "retired": k.retired} for k in keys]
            for keys in ring.key_sets()
        }
        await _audit(state, who, "admin.keys.list", "keys", rid)
        return {
            "keys": out,
            "rotate": "run `taskgate keys rotate` then restart workers, then gateways",
        }

    @router.get(
        "/stats",
        summary="Queue depths, backlog, dead letters, clients; per task over a recent window: "
        "success rate, p50/p95 run time, failure types",
    )
    async def stats(
        who: Reader,
        state: State,
        rid: RequestId,
        window: Annotated[int, Query(ge=60, le=MAX_WINDOW, description="seconds")] = 3600,
    ) -> dict[str, Any]:
        queues = sorted({spec.queue for spec in state.catalogue} | {"taskgate"})
        async with state.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.llen(queue)
            pipe.zcard(GLOBAL_QUEUED)
            pipe.zcard(DLQ_INDEX)
            pipe.scard(CLIENTS_SET)
            pipe.xlen(AUDIT_STREAM)
            replies = await pipe.execute()
        depth = dict(zip(queues, replies[: len(queues)], strict=True))
        backlog, dead, clients, audit = replies[len(queues) :]
        tasks = await read_window(state.redis, time.time(), window)
        await _audit(state, who, "admin.stats", "stats", rid)
        return {
            "window_seconds": window,
            "tasks": {name: task.public() for name, task in tasks.items()},
            "queues": depth,
            "queued_not_started": backlog,
            "dead_letters": dead,
            "clients": clients,
            "audit_records": audit,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _task_record(
    state: GatewayState, task_id: str, rid: str = "-", who: str = "admin"
) -> dict[str, str]:
    if not TASK_ID.fullmatch(task_id):
        raise ApiError(404, "Not found", "no such task", kind="not-found")
    raw = await state.redis.hgetall(task_key(task_id))
    if not raw:
        raise ApiError(404, "Not found", "no such task", kind="not-found")
    record = await stored.trusted_record(state, task_id, raw, actor=who, request_id=rid)
    if record is None:  # refused and audited
        raise stored.conflict(StoredStateError("refused", record="task", reason="refused"))
    return record


async def _requeue(
    state: GatewayState, task_id: str, rid: str, who: str, *, action: str
) -> dict[str, Any]:
    try:
        dead = await deadletters.requeue(
            state.redis, state.keys, task_id, ttl=state.settings.envelope_ttl
        )
    except deadletters.DeadLetterError as exc:
        await _audit(state, who, action, task_id, rid, outcome="denied", reason=exc.detail)
        raise ApiError(exc.status, "Requeue refused", exc.detail, kind="dead-letter") from None
    await _audit(state, who, action, task_id, rid)
    state.metrics.replayed(dead.name)
    return {"id": task_id, "status": "queued", "replays": dead.replays}
