"""``/v1/admin/tasks`` and ``/v1/admin/dead-letters``: every task's metadata, revocation,
and the dead letters (inspect, requeue, purge). Never a payload or a result."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.admin_audit import CONFLICT, admin_audit, answers
from gateway.deps import Admin, Reader, RequestId, State
from gateway.http.errors import ApiError
from gateway.routes.tasks import task_view
from gateway.schemas_admin import (
    AdminTaskPage,
    AdminTaskRecord,
    DeadLetterPage,
    DeadLetterView,
    PurgedDeadLetter,
    Requeued,
    TaskRevoked,
)
from gateway.state import GatewayState
from gateway.stores import checks as stored
from gateway.stores import deadletters
from gateway.stores.revocation import revoke
from security.audit import AuditRecord
from security.audit.actions import AuditAction
from security.errors import StoredStateError
from workers.contract.states import TaskState
from workers.contract.wire import ALL_TASKS, TASK_ID, task_key

__all__ = ["add_dead_letter_routes", "add_task_routes"]


def add_task_routes(router: APIRouter) -> None:
    """All tasks (listed, inspected, revoked) and the retry of a dead-lettered one."""

    @router.get(
        "/tasks", summary="All tasks, newest first", **answers(AdminTaskPage, "One page of tasks")
    )
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
        await admin_audit(state, who, AuditAction.ADMIN_TASKS_LIST, "tasks", rid)
        return {"items": items, "next": rows[-1][1] if len(rows) == limit else None}

    @router.get(
        "/tasks/{task_id}",
        summary="Inspect a task's metadata (never its payload)",
        **answers(AdminTaskRecord, "The task", errors=CONFLICT),
    )
    async def inspect_task(
        task_id: str, who: Reader, state: State, rid: RequestId
    ) -> dict[str, Any]:
        record = await _task_record(state, task_id, rid, who)
        await admin_audit(state, who, AuditAction.ADMIN_TASKS_INSPECT, task_id, rid)
        return {
            **task_view(task_id, record),
            "owner": record.get("owner"),
            "queue": record.get("queue"),
        }

    @router.post(
        "/tasks/{task_id}/revoke",
        status_code=202,
        summary="Revoke a task: a queued one never runs, a running cancellable one is stopped",
        **answers(
            TaskRevoked,
            "Revoked, or being stopped",
            202,
            errors={
                409: {
                    "description": "Finished, running and not cancellable, or its record "
                    "failed its integrity check",
                    **CONFLICT[409],
                }
            },
        ),
    )
    async def revoke_task(task_id: str, who: Admin, state: State, rid: RequestId) -> dict[str, Any]:
        status = await revoke(state, task_id, await _task_record(state, task_id, rid, who))
        await admin_audit(state, who, AuditAction.ADMIN_TASKS_REVOKE, task_id, rid)
        return {"id": task_id, "status": status}

    @router.post(
        "/tasks/{task_id}/retry",
        status_code=202,
        summary="Run a dead-lettered task again",
        **answers(Requeued, "Queued again", 202, errors=CONFLICT),
    )
    async def retry_task(task_id: str, who: Admin, state: State, rid: RequestId) -> dict[str, Any]:
        return await _requeue(state, task_id, rid, who, action=AuditAction.ADMIN_TASKS_RETRY)


def add_dead_letter_routes(router: APIRouter) -> None:
    """Dead letters: listed, inspected, requeued, purged."""

    @router.get(
        "/dead-letters",
        summary="Dead-lettered tasks, newest first",
        **answers(DeadLetterPage, "One page of dead letters"),
    )
    async def list_dead_letters(
        who: Reader,
        state: State,
        rid: RequestId,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    ) -> dict[str, Any]:
        items, cursor = await deadletters.list_dead(state.redis, limit=limit, before=before)
        await admin_audit(state, who, AuditAction.ADMIN_DLQ_LIST, "dead-letters", rid)
        return {"items": [d.public() for d in items], "next": cursor}

    @router.get(
        "/dead-letters/{task_id}",
        summary="A dead letter's metadata",
        **answers(DeadLetterView, "The dead letter"),
    )
    async def inspect_dead_letter(
        task_id: str, who: Reader, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            dead = await deadletters.inspect(state.redis, task_id)
        except deadletters.DeadLetterError as exc:
            raise ApiError(exc.status, "Dead letter", exc.detail, kind="dead-letter") from None
        await admin_audit(state, who, AuditAction.ADMIN_DLQ_INSPECT, task_id, rid)
        return dead.public()

    @router.post(
        "/dead-letters/{task_id}/requeue",
        status_code=202,
        summary="Requeue (fresh attempts, capped replays)",
        **answers(Requeued, "Queued again", 202, errors=CONFLICT),
    )
    async def requeue_dead_letter(
        task_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        return await _requeue(state, task_id, rid, who, action=AuditAction.ADMIN_DLQ_REQUEUE)

    @router.delete(
        "/dead-letters/{task_id}",
        summary="Purge a dead letter and its secrets",
        **answers(PurgedDeadLetter, "Purged"),
    )
    async def purge_dead_letter(
        task_id: str, who: Admin, state: State, rid: RequestId
    ) -> dict[str, Any]:
        try:
            dead = await deadletters.purge(state.redis, task_id)
        except deadletters.DeadLetterError as exc:
            raise ApiError(exc.status, "Dead letter", exc.detail, kind="dead-letter") from None
        await admin_audit(state, who, AuditAction.ADMIN_DLQ_PURGE, task_id, rid)
        return {**dead.public(), "purged": True}


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
    state: GatewayState, task_id: str, rid: str, who: str, *, action: AuditAction
) -> dict[str, Any]:
    # The "ok" record is appended in the same atomic call as the requeue (group commit).
    record = AuditRecord.make(
        actor=who, action=action, outcome="ok", target=task_id, request_id=rid
    )
    try:
        dead = await deadletters.requeue(
            state.redis,
            state.keys,
            task_id,
            ttl=state.settings.envelope_ttl,
            record=record,
            commit=state.audit.record,
        )
    except deadletters.DeadLetterError as exc:
        await admin_audit(state, who, action, task_id, rid, outcome=exc.outcome, reason=exc.detail)
        raise ApiError(exc.status, "Requeue refused", exc.detail, kind="dead-letter") from None
    state.metrics.replayed(dead.name)
    return {"id": task_id, "status": TaskState.QUEUED, "replays": dead.replays}
