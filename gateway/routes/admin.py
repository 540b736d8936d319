"""``/v1/admin/...``: clients, token revocation, tasks, dead letters, keys, stats, audit.

Admin routes take a named operator (``gateway.stores.operators``): reads take either role,
changes need the admin role (an auditor gets 403, audited); the audit routes also take a
client token with ``audit:read``. Every admin call is audited (who, what, target, outcome).
Every answer has a named schema (``gateway.schemas_admin``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.admin_audit import CONFLICT, admin_audit, answers, refused
from gateway.admin_bodies import NewClient, Revocation, new_client_model
from gateway.deps import Admin, Reader, RequestId, State
from gateway.http.errors import ApiError
from gateway.routes.admin_tasks import add_dead_letter_routes, add_task_routes
from gateway.routes.audit import add_audit_routes
from gateway.routes.tasks import COMMON_ERRORS
from gateway.schemas_admin import (
    ClientList,
    ClientView,
    CreatedClient,
    KeyList,
    RevokedToken,
    RotatedSecret,
    Stats,
)
from gateway.stores import checks as stored
from gateway.stores.client_rules import check_known_tasks
from gateway.stores.clients import ClientError
from gateway.stores.task_stats import MAX_WINDOW, read_window
from security.audit.actions import AuditAction
from security.errors import StoredStateError, TokenError
from security.tokens import verify_token
from workers.contract.deadletters import DLQ_INDEX
from workers.contract.keys import AUDIT_STREAM, CLIENTS_SET
from workers.contract.wire import GLOBAL_QUEUED

__all__ = ["build_admin_router"]

_JTI = re.compile(r"^[0-9a-f]{32}$")
# An unknown client (404), a name in use or a record that failed its check (409).
_CLIENT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such client", "content": {"application/problem+json": {}}},
    **CONFLICT,
}


def _client_error(exc: ClientError) -> ApiError:
    status = {"unknown_client": 404, "conflict": 409}.get(exc.reason, 422)
    return ApiError(status, "Client request refused", str(exc), kind=f"client-{exc.reason}")


def build_admin_router(task_names: Iterable[str] = ()) -> APIRouter:
    """Every admin route, grouped by what it manages (``task_names``: the catalogue's)."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=COMMON_ERRORS)
    _client_routes(router, new_client_model(task_names))
    for add in (add_task_routes, add_dead_letter_routes, _ops_routes, add_audit_routes):
        add(router)
    return router


def _client_routes(router: APIRouter, body_model: type[NewClient]) -> None:
    @router.get(
        "/clients", summary="List clients (never secrets)", **answers(ClientList, "The clients")
    )
    async def list_clients(who: Reader, state: State, rid: RequestId) -> dict[str, Any]:
        clients, bad = await state.clients.scan()
        for client_id, exc in bad:  # listed apart, never shown as if trusted
            await refused(state, exc, f"client:{client_id}", rid, who)
        await admin_audit(state, who, AuditAction.ADMIN_CLIENTS_LIST, "clients", rid)
        return {"items": [c.public() for c in clients], "refused": [cid for cid, _ in bad]}

    async def create_client(
        body: NewClient, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            check_known_tasks(body.scopes, (spec.name for spec in state.catalogue))
            client, secret = await state.clients.create(
                body.name, body.scopes, rate_limit=body.rate_limit, max_queued=body.max_queued
            )
        except ClientError as exc:
            await admin_audit(
                state,
                who,
                AuditAction.ADMIN_CLIENTS_CREATE,
                body.name,
                rid,
                outcome="denied",
                reason=exc.reason,
            )
            raise _client_error(exc) from None
        await admin_audit(state, who, AuditAction.ADMIN_CLIENTS_CREATE, client.client_id, rid)
        return {**client.public(), "client_secret": secret}

    # The body's model is built for this catalogue: set as a real type, not a string.
    create_client.__annotations__["body"] = body_model
    router.add_api_route(
        "/clients",
        create_client,
        methods=["POST"],
        status_code=201,
        summary="Create a client; the secret is shown once",
        **answers(CreatedClient, "The client and its secret", 201, errors=CONFLICT),
    )

    @router.post(
        "/clients/{client_id}/disable",
        summary="Disable a client (its tokens stop working)",
        **answers(ClientView, "The client, disabled", errors=_CLIENT_ERRORS),
    )
    async def disable_client(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            client = await state.clients.disable(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await refused(state, exc, f"client:{client_id}", rid, who) from None
        await admin_audit(state, who, AuditAction.ADMIN_CLIENTS_DISABLE, client_id, rid)
        return client.public()

    @router.post(
        "/clients/{client_id}/enable",
        summary="Enable a client again",
        **answers(ClientView, "The client, enabled", errors=_CLIENT_ERRORS),
    )
    async def enable_client(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            client = await state.clients.enable(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await refused(state, exc, f"client:{client_id}", rid, who) from None
        await admin_audit(state, who, AuditAction.ADMIN_CLIENTS_ENABLE, client_id, rid)
        return client.public()

    @router.post(
        "/clients/{client_id}/rotate-secret",
        summary="New secret; the old one stops working",
        **answers(RotatedSecret, "The new secret, shown once", errors=_CLIENT_ERRORS),
    )
    async def rotate_client_secret(
        client_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            secret = await state.clients.rotate_secret(client_id)
        except ClientError as exc:
            raise _client_error(exc) from None
        except StoredStateError as exc:
            raise await refused(state, exc, f"client:{client_id}", rid, who) from None
        await admin_audit(state, who, AuditAction.ADMIN_CLIENTS_ROTATE_SECRET, client_id, rid)
        return {"client_id": client_id, "client_secret": secret}


def _ops_routes(router: APIRouter) -> None:
    @router.post(
        "/tokens/revoke",
        summary="Revoke an access token by jti or by the token",
        **answers(RevokedToken, "Revoked", errors=CONFLICT),
    )
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
            raise await refused(state, exc, "revocations", rid, who) from None
        except ClientError as exc:
            raise _client_error(exc) from None
        await admin_audit(state, who, AuditAction.ADMIN_TOKENS_REVOKE, jti, rid)
        return {"jti": jti, "revoked": True, "until": int(time.time()) + ttl}

    @router.get("/keys", summary="Key ids in use (never material)", **answers(KeyList, "Key ids"))
    async def list_keys(who: Reader, state: State, rid: RequestId) -> dict[str, Any]:
        ring = state.keys
        out = {
            str(keys.purpose): [{"kid": k.kid, "retired": k.retired} for k in keys]
            for keys in ring.key_sets()
        }
        await admin_audit(state, who, AuditAction.ADMIN_KEYS_LIST, "keys", rid)
        return {
            "keys": out,
            "rotate": "run `taskgate keys rotate` then restart workers, then gateways",
        }

    @router.get(
        "/stats",
        summary="Queue depths, backlog, dead letters, clients; per task over a recent window: "
        "success rate, p50/p95 run time, failure types",
        **answers(Stats, "The figures"),
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
        await admin_audit(state, who, AuditAction.ADMIN_STATS, "stats", rid)
        return {
            "window_seconds": window,
            "tasks": {name: task.public() for name, task in tasks.items()},
            "queues": depth,
            "queued_not_started": backlog,
            "dead_letters": dead,
            "clients": clients,
            "audit_records": audit,
        }
