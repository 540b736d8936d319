"""The console's state-changing forms (POST): each needs a live session, the session's
CSRF token and the admin role; each is audited under the operator's name with the same
action names the admin API uses. An auditor's attempt is refused (403) and audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from gateway.console.csrf import csrf_ok
from gateway.console.pages import context, signed_in
from gateway.console.render import page, redirect
from gateway.console.session import ConsoleSession, end_session
from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores import checks as stored
from gateway.stores import deadletters
from gateway.stores.client_rules import check_known_tasks
from gateway.stores.clients import ClientError
from gateway.stores.revocation import revoke
from security.audit import AuditRecord
from security.audit.actions import AuditAction
from security.errors import StoredStateError
from workers.contract.wire import TASK_ID, task_key

__all__ = ["GROUP_CAP", "add_actions", "audit_action", "checked_form"]

GROUP_CAP = 50  # dead letters one group action touches at most
# A group form's op -> the action audited per dead letter and the one for the whole group.
_GROUP_ACTIONS = {
    "requeue": (AuditAction.ADMIN_DLQ_REQUEUE, AuditAction.ADMIN_DLQ_GROUP_REQUEUE),
    "purge": (AuditAction.ADMIN_DLQ_PURGE, AuditAction.ADMIN_DLQ_GROUP_PURGE),
}
_CLIENT_ACTIONS = {
    "disable": AuditAction.ADMIN_CLIENTS_DISABLE,
    "enable": AuditAction.ADMIN_CLIENTS_ENABLE,
    "update": AuditAction.ADMIN_CLIENTS_UPDATE,
    "rotate_secret": AuditAction.ADMIN_CLIENTS_ROTATE_SECRET,
}
_RID = "console"


async def audit_action(
    state: GatewayState,
    session: ConsoleSession,
    action: AuditAction,
    target: str,
    *,
    outcome: str = "ok",
    reason: str = "",
) -> None:
    await state.record(
        actor=session.actor,
        action=action,
        outcome=outcome,
        target=target[:128],
        reason=reason[:200],
        request_id=_RID,
    )


async def _requeue_one(
    state: GatewayState, session: ConsoleSession, task_id: str, action: AuditAction
) -> None:
    """Requeue a dead letter; its ``ok`` record goes in the same atomic call."""
    record = AuditRecord.make(
        actor=session.actor, action=action, outcome="ok", target=task_id[:128], request_id=_RID
    )
    await deadletters.requeue(
        state.redis,
        state.keys,
        task_id,
        ttl=state.settings.envelope_ttl,
        record=record,
        commit=state.audit.record,
    )


async def checked_form(
    request: Request, *, admin: bool = True
) -> tuple[GatewayState, ConsoleSession, FormData] | Response:
    """The session, CSRF token and role of a form post; a refusal page (or the sign-in
    page) otherwise. Refusals of a signed-in operator are audited."""
    state, session = await signed_in(request)
    if session is None:
        return redirect("/console/login")
    form = await request.form()
    where = f"{request.method} {request.url.path}"
    if not csrf_ok(request, session, form.get("csrf")):
        await audit_action(
            state, session, AuditAction.CONSOLE_CSRF, where, outcome="denied", reason="bad token"
        )
        problem = "This form is stale or did not come from the console; reload and try again."
        return page("error", 403, **context(request, session, "", problem=problem))
    if admin and not session.operator.is_admin:
        reason = f"role {session.operator.role} is read-only"
        await audit_action(
            state, session, AuditAction.OPERATOR_FORBIDDEN, where, outcome="denied", reason=reason
        )
        problem = "This needs the admin role."
        return page("error", 403, **context(request, session, "", problem=problem))
    return state, session, form


def _field(form: FormData, name: str, limit: int = 4096) -> str:
    value = form.get(name)
    return value[:limit].strip() if isinstance(value, str) else ""


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def add_actions(router: APIRouter) -> None:  # noqa: PLR0915 - one closure per form
    """Add every form handler to the console router."""

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        checked = await checked_form(request, admin=False)
        if isinstance(checked, Response):
            return checked
        state, session, _ = checked
        response = redirect("/console/login?bye=1")
        await end_session(state, session, response)
        await audit_action(state, session, AuditAction.CONSOLE_SIGNOUT, session.actor)
        return response

    @router.post("/tasks/{task_id}/cancel")
    async def cancel(request: Request, task_id: str) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, _ = checked
        raw = await state.redis.hgetall(task_key(task_id)) if TASK_ID.fullmatch(task_id) else {}
        record = (
            await stored.trusted_record(state, task_id, raw, actor=session.actor, request_id=_RID)
            if raw
            else None
        )
        if record is None:
            return page("error", 404, **context(request, session, "tasks", problem="No such task."))
        try:
            await revoke(state, task_id, record)
        except ApiError as exc:
            await audit_action(
                state,
                session,
                AuditAction.ADMIN_TASKS_REVOKE,
                task_id,
                outcome="denied",
                reason=exc.kind,
            )
            return page(
                "error", exc.status, **context(request, session, "tasks", problem=exc.detail)
            )
        await audit_action(state, session, AuditAction.ADMIN_TASKS_REVOKE, task_id)
        return redirect(f"/console/tasks/{task_id}?msg=cancelled")

    async def _requeue(request: Request, task_id: str, action: AuditAction, back: str) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, _ = checked
        try:
            await _requeue_one(state, session, task_id, action)
        except deadletters.DeadLetterError as exc:
            await audit_action(
                state, session, action, task_id, outcome=exc.outcome, reason=exc.detail
            )
            return page("error", exc.status, **context(request, session, "dlq", problem=exc.detail))
        return redirect(back)

    @router.post("/tasks/{task_id}/retry")
    async def retry(request: Request, task_id: str) -> Response:
        back = f"/console/tasks/{task_id}?msg=retried"
        return await _requeue(request, task_id, AuditAction.ADMIN_TASKS_RETRY, back)

    @router.post("/dead-letters/{task_id}/requeue")
    async def requeue_one(request: Request, task_id: str) -> Response:
        return await _requeue(
            request, task_id, AuditAction.ADMIN_DLQ_REQUEUE, "/console/dead-letters?msg=requeued"
        )

    @router.post("/dead-letters/{task_id}/purge")
    async def purge_one(request: Request, task_id: str) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, _ = checked
        try:
            await deadletters.purge(state.redis, task_id)
        except deadletters.DeadLetterError as exc:
            await audit_action(
                state, session, AuditAction.ADMIN_DLQ_PURGE, task_id, outcome="denied"
            )
            return page("error", exc.status, **context(request, session, "dlq", problem=exc.detail))
        await audit_action(state, session, AuditAction.ADMIN_DLQ_PURGE, task_id)
        return redirect("/console/dead-letters?msg=purged")

    @router.post("/dead-letters/group")
    async def group(request: Request) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, form = checked
        task, reason, op = (
            _field(form, "task", 128),
            _field(form, "reason", 200),
            _field(form, "op"),
        )
        if op not in _GROUP_ACTIONS or _field(form, "confirm") != "yes":
            problem = "Tick the confirmation box to act on a whole group."
            return page("error", 422, **context(request, session, "dlq", problem=problem))
        each, whole = _GROUP_ACTIONS[op]
        items, _ = await deadletters.list_dead(state.redis, limit=200)
        chosen = [d for d in items if d.name == task and d.reason == reason][:GROUP_CAP]
        done = 0
        for dead in chosen:
            try:
                if op == "requeue":
                    await _requeue_one(state, session, dead.task_id, AuditAction.ADMIN_DLQ_REQUEUE)
                else:
                    await deadletters.purge(state.redis, dead.task_id)
            except deadletters.DeadLetterError as exc:
                await audit_action(
                    state, session, each, dead.task_id, outcome=exc.outcome, reason=exc.detail
                )
                continue
            done += 1
            if op == "purge":  # a requeue's record was written with the requeue
                await audit_action(state, session, each, dead.task_id)
        await audit_action(state, session, whole, task, reason=f"{done} of {len(chosen)}")
        return redirect("/console/dead-letters?msg=group")

    def _client_page(request: Request, session: ConsoleSession, **extra: Any) -> Response:
        return page("secret", **context(request, session, "clients", **extra))

    @router.post("/clients")
    async def create_client(request: Request) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, form = checked
        name = _field(form, "name", 64)
        scopes = _field(form, "scopes").split() + [
            v for v in form.getlist("scope") if isinstance(v, str)
        ]
        try:
            check_known_tasks(scopes, (spec.name for spec in state.catalogue))
            client, secret = await state.clients.create(
                name,
                scopes,
                rate_limit=_field(form, "rate_limit", 64) or "120/minute",
                max_queued=_int(_field(form, "max_queued", 10), 100),
            )
        except ClientError as exc:
            await audit_action(
                state, session, AuditAction.ADMIN_CLIENTS_CREATE, name or "-", outcome="denied",
                reason=exc.reason,
            )  # fmt: skip
            return page("error", 422, **context(request, session, "clients", problem=str(exc)))
        await audit_action(state, session, AuditAction.ADMIN_CLIENTS_CREATE, client.client_id)
        return _client_page(request, session, client=client.public(), secret=secret)

    async def _client_change(request: Request, client_id: str, op: str) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, form = checked
        action = _CLIENT_ACTIONS[op]
        try:
            if op == "disable":
                await state.clients.disable(client_id)
            elif op == "enable":
                await state.clients.enable(client_id)
            elif op == "update":
                scopes = _field(form, "scopes").split()
                check_known_tasks(scopes, (spec.name for spec in state.catalogue))
                await state.clients.update(
                    client_id,
                    scopes,
                    rate_limit=_field(form, "rate_limit", 64),
                    max_queued=_int(_field(form, "max_queued", 10), 0),
                )
            else:
                secret = await state.clients.rotate_secret(client_id)
                await audit_action(state, session, action, client_id)
                client = await state.clients.get(client_id)
                view = client.public() if client else {"client_id": client_id}
                return _client_page(request, session, client=view, secret=secret)
        except (ClientError, StoredStateError) as exc:
            why = getattr(exc, "reason", "refused")
            await audit_action(state, session, action, client_id, outcome="denied", reason=why)
            status = 404 if why == "unknown_client" else 422
            return page("error", status, **context(request, session, "clients", problem=str(exc)))
        await audit_action(state, session, action, client_id)
        return redirect(f"/console/clients?msg={'saved' if op == 'update' else op + 'd'}")

    @router.post("/clients/{client_id}/disable")
    async def disable(request: Request, client_id: str) -> Response:
        return await _client_change(request, client_id, "disable")

    @router.post("/clients/{client_id}/enable")
    async def enable(request: Request, client_id: str) -> Response:
        return await _client_change(request, client_id, "enable")

    @router.post("/clients/{client_id}/edit")
    async def edit(request: Request, client_id: str) -> Response:
        return await _client_change(request, client_id, "update")

    @router.post("/clients/{client_id}/rotate-secret")
    async def rotate(request: Request, client_id: str) -> Response:
        return await _client_change(request, client_id, "rotate_secret")
