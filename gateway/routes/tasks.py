"""Client task routes: catalogue, submit, status, list, cancel."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from gateway.deps import (
    Client,
    Principal,
    RequestId,
    RequireScope,
    State,
    TasksReader,
    current_client,
    current_operator,
    forbid_auditor,
    verified_claims,
)
from gateway.http.errors import ApiError
from gateway.schemas import Cancellation, Catalogue, TaskPage, TaskView
from gateway.state import GatewayState
from gateway.stores.checks import trusted_record
from gateway.stores.operators import Operator
from gateway.stores.revocation import revoke
from security.audit.actions import AuditAction
from security.errors import TaskgateError
from security.passwords import ADMIN_TOKEN_PREFIX
from workers.contract.keys import result_key
from workers.contract.states import UNKNOWN, TaskState
from workers.contract.wire import (
    TASK_ID,
    owner_index,
    task_key,
)

__all__ = ["build_router", "task_view"]

log = logging.getLogger("taskgate.gateway")

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked token", **PROBLEM},
    403: {"description": "The token lacks the needed scope", **PROBLEM},
    # Declared so FastAPI does not document its own application/json 422 body.
    422: {"description": "Invalid request (parameters or body)", **PROBLEM},
    503: {"description": "Storage unreachable (fail closed)", **PROBLEM},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such task (or not the caller's)", **PROBLEM}
}
# A task's error is shown while it describes the task's current state: an attempt that
# failed and will be retried, or the final failure. A later attempt that runs or succeeds
# leaves the worker's record of the earlier failure behind; it is not shown then.
_ERROR_STATES = frozenset({TaskState.RETRIED, TaskState.FAILED, TaskState.DEAD_LETTERED})


async def client_or_admin(request: Request, state: State) -> Principal | Operator:
    """A client principal holding ``tasks:read``, or an operator (any task; cancelling
    needs the admin role)."""
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2].strip()
    if token.startswith(ADMIN_TOKEN_PREFIX):
        return await current_operator(request, state)
    rid = str(getattr(request.state, "request_id", "-"))
    return await _READ(await current_client(await verified_claims(request, state), state, rid))


_READ = RequireScope("tasks:read")
OwnerOrAdmin = Annotated[Principal | Operator, Depends(client_or_admin)]
TaskId = Annotated[str, Path(pattern=TASK_ID.pattern, description="A task id (UUID)")]


class _TaskIdConvertor(Convertor[str]):
    """``{task_id:task_id}``: only task-id-shaped path segments reach the task routes.

    So ``/v1/tasks/catalog`` and ``/v1/tasks/<task name>`` never match ``/{task_id}`` and a
    wrong method there gets 405 with the right ``Allow``, not a "no such task" 404.
    """

    regex = TASK_ID.pattern.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("task_id", _TaskIdConvertor())


def _task_id(value: str) -> str:
    if not TASK_ID.fullmatch(value):
        raise ApiError(404, "Not found", "no such task", kind="not-found")
    return value


async def _load_visible(
    state: GatewayState, task_id: str, who: Principal | Operator, rid: str = "-"
) -> dict[str, str]:
    raw = await state.redis.hgetall(task_key(_task_id(task_id)))
    record = raw and await trusted_record(state, task_id, raw, actor=who.actor, request_id=rid)
    # Another client's task, or one whose owner is not trusted, looks missing (no BOLA oracle).
    if not record or (isinstance(who, Principal) and record.get("owner") != who.client_id):
        raise ApiError(404, "Not found", "no such task", kind="not-found")
    return record


def task_view(task_id: str, record: dict[str, str]) -> dict[str, Any]:
    """The public view of a task record (never the payload)."""
    view: dict[str, Any] = {
        "id": task_id,
        "task": record.get("name"),
        "status": record.get("state", UNKNOWN),
        "attempts": int(record.get("attempts", "0") or 0),
        # every run of its body so far: a re-run after a crash or a reclaim counts too
        "runs": int(record.get("run_count", "0") or 0),
        "links": {"self": f"/v1/tasks/{task_id}"},
    }
    for stamp in ("submitted_at", "started_at", "finished_at"):
        if record.get(stamp):
            view[stamp] = float(record[stamp])
    error = record.get("error")
    if error and view["status"] in _ERROR_STATES:
        view["error"] = task_error(error, view["attempts"])
    return view


def task_error(text: str, attempt: int) -> dict[str, Any]:
    """The one shape of a task's error: a kind (the text up to ``;``), the worker's short
    redacted text, and the attempt it belongs to."""
    kind = text.split(";", 1)[0].split(" (", 1)[0].strip() or "error"
    detail = text[:300] if text.strip() != kind else None  # no text beyond the kind
    return {"type": kind[:100], "detail": detail, "attempt": attempt}


def _just_finished(view: dict[str, Any], window: float = 60.0) -> bool:
    finished = view.get("finished_at")
    return isinstance(finished, float) and time.time() - finished < window


def _result_summary(doc: dict[str, Any], attempts: int) -> dict[str, Any]:
    status = doc.get("status")
    if status == "SUCCESS":
        return {"result": doc.get("result")}
    if status == "FAILURE":
        result = doc.get("result")
        kind = result.get("exc_type", "Error") if isinstance(result, dict) else "Error"
        return {"error": {"type": str(kind)[:100], "detail": None, "attempt": attempts}}
    return {}


async def _add_result(state: GatewayState, task_id: str, view: dict[str, Any]) -> None:
    """Open the sealed result for its owner and add it (or the error type) to ``view``."""
    raw = await state.redis.get(result_key(task_id))
    if raw is not None:
        try:
            blob = raw if isinstance(raw, bytes) else raw.encode()
            doc = state.codec.decode_result(task_id, blob)
        except (TaskgateError, ValueError):
            log.error("result of %s failed to open", task_id)
            raise ApiError(
                500, "Internal error", "the result could not be opened", kind="internal"
            ) from None
        view.update(_result_summary(doc, view["attempts"]))
    elif view["status"] == TaskState.SUCCEEDED and _just_finished(view):
        # The worker records success just before Celery stores the result: for that
        # instant the task is still finishing - never "succeeded" without its result.
        view["status"] = TaskState.STARTED


def build_router() -> APIRouter:
    """The /v1/tasks routes (per-task submit routes are added by ``submit_route``)."""
    router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=COMMON_ERRORS)

    @router.get(
        "/catalog",
        summary="Tasks the caller may submit, with their JSON Schemas",
        response_model=None,
        responses={200: {"model": Catalogue, "description": "The caller's tasks"}},
    )
    async def catalog(who: Client, state: State) -> dict[str, Any]:
        # A full client check (revoked token, disabled client), not only the signature.
        items = []
        for spec in state.catalogue:
            if not who.allows(spec.scope):
                continue
            schema = spec.schema.model_json_schema()
            for path in spec.secret_fields:
                _mark_secret(schema, path.split("."))
            items.append(
                {
                    "name": spec.name,
                    "description": spec.description,
                    "schema": schema,
                    "secret_fields": list(spec.secret_fields),
                    "scope": spec.scope,
                    "rate_limit": spec.rate_limit,
                    "max_payload_bytes": spec.max_payload_bytes,
                    "best_effort": spec.best_effort,
                    "cancellable": spec.cancellable,
                    "submit": f"/v1/tasks/{spec.name}",
                }
            )
        return {"tasks": items}

    @router.get(
        "",
        summary="The caller's own tasks, newest first",
        response_model=None,
        responses={200: {"model": TaskPage, "description": "One page of tasks"}},
    )
    async def list_tasks(
        who: TasksReader,
        state: State,
        *,
        rid: RequestId,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[
            float | None, Query(ge=0, allow_inf_nan=False, description="Cursor from `next`")
        ] = None,
        status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,20}$")] = None,
    ) -> dict[str, Any]:
        upper: float | str = f"({before}" if before is not None else "+inf"
        rows: list[Any] = await state.redis.zrevrangebyscore(
            owner_index(who.client_id), upper, "-inf", start=0, num=limit, withscores=True
        )
        async with state.redis.pipeline(transaction=False) as pipe:
            for member, _ in rows:
                pipe.hgetall(task_key(member.decode() if isinstance(member, bytes) else member))
            records = await pipe.execute()
        items = []
        for (member, _score), raw in zip(rows, records, strict=True):
            if not raw:
                continue
            task_id = member.decode() if isinstance(member, bytes) else str(member)
            record = await trusted_record(state, task_id, raw, actor=who.actor, request_id=rid)
            # The index is only a hint: a record is listed if it verifies as the caller's.
            if record is None or record.get("owner") != who.client_id:
                continue
            view = task_view(task_id, record)
            if status is None or view["status"] == status:
                items.append(view)
        next_cursor = rows[-1][1] if len(rows) == limit else None
        return {"items": items, "next": next_cursor}

    @router.get(
        "/{task_id:task_id}",
        summary="State, timings and (for the owner) the result",
        response_model=None,
        responses={200: {"model": TaskView, "description": "The task"}, **NOT_FOUND},
    )
    async def get_task(
        task_id: TaskId, who: OwnerOrAdmin, state: State, request_id: RequestId
    ) -> dict[str, Any]:
        record = await _load_visible(state, task_id, who, request_id)
        view = task_view(task_id, record)
        # Results are opened for the owner only; the best-effort lane stores none.
        if isinstance(who, Principal) and record.get("queue") != "best-effort":
            await _add_result(state, task_id, view)
        return view

    @router.delete(
        "/{task_id:task_id}",
        status_code=202,
        summary="Cancel: a queued task never runs; a running one stops if it is cancellable",
        description=(
            "`revoked`: the task had not started and never will. `cancelling`: it is "
            "running and declared `cancellable`; the worker stops it and its status "
            "becomes `revoked`. A running task that is not cancellable is left running."
        ),
        response_model=None,
        responses={
            202: {"model": Cancellation, "description": "Revoked, or cancelling"},
            **NOT_FOUND,
            409: {
                "description": "The task already finished, or runs and is not cancellable",
                **PROBLEM,
            },
        },
    )
    async def cancel_task(
        task_id: TaskId, who: OwnerOrAdmin, state: State, request_id: RequestId, request: Request
    ) -> dict[str, Any]:
        if isinstance(who, Operator):
            await forbid_auditor(request, state, who)
        record = await _load_visible(state, task_id, who, request_id)
        actor = who.actor
        try:
            status = await revoke(state, task_id, record)
        except ApiError as exc:
            if exc.status == 409:
                await state.record(
                    actor=actor,
                    action=AuditAction.TASK_CANCEL,
                    outcome="denied",
                    target=task_id,
                    reason=exc.kind,
                    request_id=request_id,
                )
            raise
        await state.record(
            actor=actor,
            action=AuditAction.TASK_CANCEL,
            outcome="ok",
            target=task_id,
            reason=status,
            request_id=request_id,
        )
        return {"id": task_id, "status": status, "links": {"self": f"/v1/tasks/{task_id}"}}

    return router


def _mark_secret(schema: dict[str, Any], path: list[str]) -> None:
    """Mark a secret field writeOnly + format password in a JSON Schema (in place)."""
    node: Any = schema
    for part in path:
        props = node.get("properties", {}) if isinstance(node, dict) else {}
        if part not in props:
            return
        node = props[part]
        if "$ref" in node:
            ref = node["$ref"].rsplit("/", 1)[-1]
            node = schema.get("$defs", {}).get(ref, node)
    if isinstance(node, dict):
        node["writeOnly"] = True
        node["format"] = "password"
