"""The console's pages (GET): overview, tasks, a task, dead letters, clients, audit (the
keys page is in :mod:`gateway.console.keys`).

Every page needs a live session (else: to the sign-in page); none shows a payload, a
result or a secret. The audit export and the bounded verify are audited like the API's.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from gateway.anchoring import averify_from_anchor, newest_anchor
from gateway.console import data
from gateway.console.render import CSP, page, redirect
from gateway.console.session import ConsoleSession, load_session
from gateway.deps import state_of
from gateway.http.errors import ApiError
from gateway.routes.audit import limit_verify, verify_lock
from gateway.routes.tasks import task_view
from gateway.state import GatewayState
from gateway.stores.checks import trusted_record
from security.audit import AuditQuery, afind_newest
from security.audit.actions import AuditAction
from security.audit.times import iso_time, parse_time
from security.errors import AuditError
from workers.contract.states import TaskState
from workers.contract.wire import TASK_ID, task_key

__all__ = ["add_pages", "context", "signed_in", "when"]

_MESSAGES = {
    "requeued": "Requeued.",
    "purged": "Purged.",
    "cancelled": "Cancel requested.",
    "retried": "Queued again.",
    "disabled": "Client disabled.",
    "enabled": "Client enabled.",
    "saved": "Saved.",
    "group": "Group done.",
}
_TEXT = Annotated[str | None, Query(max_length=128)]


def context(request: Request, session: ConsoleSession, nav: str, **extra: Any) -> dict[str, Any]:
    """What every page's template gets: who is signed in, the CSRF token, the message."""
    msg = request.query_params.get("msg", "")
    return {
        "operator": session.operator,
        "csrf": session.csrf,
        "nav": nav,
        "message": _MESSAGES.get(msg),
        "error": None,
        **extra,
    }


async def signed_in(request: Request) -> tuple[GatewayState, ConsoleSession | None]:
    state = state_of(request)
    return state, await load_session(state, request)


def when(text: str | None) -> tuple[float | None, str | None]:
    """An ISO 8601 time as epoch seconds, or the reason it is not one (empty: neither)."""
    if not text:
        return None, None
    try:
        return parse_time(text), None
    except AuditError as exc:
        return None, str(exc)


def add_pages(router: APIRouter) -> None:  # noqa: PLR0915 - one closure per page
    """Add every page to the console router."""

    @router.get("")
    async def root(request: Request) -> Response:
        _, session = await signed_in(request)
        return redirect("/console/overview" if session else "/console/login")

    @router.get("/overview")
    async def overview(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        stats = await data.overview(state, session.actor)
        return page("overview", **context(request, session, "overview", s=stats, now=time.time()))

    @router.get("/tasks")
    async def tasks(  # noqa: PLR0917 - one query parameter per filter
        request: Request,
        name: _TEXT = None,
        owner: _TEXT = None,
        status: _TEXT = None,
        since: _TEXT = None,
        until: _TEXT = None,
    ) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        lower, bad_since = when(since)
        upper, bad_until = when(until)
        query = data.TaskFilter(
            name=name or None, owner=owner or None, status=status or None, since=lower, until=upper
        )
        found = await data.search_tasks(state, query, session.actor)
        form = {"name": name, "owner": owner, "status": status, "since": since, "until": until}
        ctx = context(request, session, "tasks", found=found, form=form)
        ctx["error"] = bad_since or bad_until
        ctx["names"] = [spec.name for spec in state.catalogue]
        ctx["states"] = list(TaskState)
        return page("tasks", **ctx)

    @router.get("/tasks/{task_id}")
    async def task(request: Request, task_id: str) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        raw = await state.redis.hgetall(task_key(task_id)) if TASK_ID.fullmatch(task_id) else {}
        record = (
            await trusted_record(state, task_id, raw, actor=session.actor, request_id="console")
            if raw
            else None
        )
        if record is None:
            return page("error", 404, **context(request, session, "tasks", problem="No such task."))
        view = {**task_view(task_id, record), "owner": record.get("owner", "")}
        view |= {"queue": record.get("queue", ""), "worker": record.get("worker", "")}
        view |= {"dead_at": record.get("dead_at"), "replays": record.get("replays", "0")}
        # Every attempt, retry, dead-lettering, requeue and cancel is in the audit log (never
        # a payload): the newest 100 events of this task, read within a bounded scan.
        events = await afind_newest(state.redis, AuditQuery(target=task_id), limit=100)
        history = [
            {"when": iso_time(e.record.time), **e.to_dict()} for e in reversed(events.entries)
        ]
        ctx = context(request, session, "tasks", t=view, history=history)
        ctx["history_partial"] = events.next_after is not None
        return page("task", **ctx)

    @router.get("/dead-letters")
    async def dead_letters(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        groups, total = await data.dead_letter_groups(state)
        return page("deadletters", **context(request, session, "dlq", groups=groups, total=total))

    @router.get("/clients")
    async def clients(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        found, refused = await state.clients.scan()
        names = [spec.name for spec in state.catalogue]
        ctx = context(request, session, "clients", clients=found, refused=refused, names=names)
        return page("clients", **ctx)

    def _audit_query(request: Request) -> tuple[AuditQuery, dict[str, str], str | None]:
        p = request.query_params
        form = {k: p.get(k, "")[:128] for k in ("since", "until", "actor", "action", "target")}
        form["outcome"] = p.get("outcome", "") if p.get("outcome") in data.OUTCOMES else ""
        lower, bad_since = when(form["since"])
        upper, bad_until = when(form["until"])
        query = AuditQuery(
            since=lower,
            until=upper,
            actor=form["actor"] or None,
            action=form["action"] or None,
            outcome=form["outcome"] or None,  # type: ignore[arg-type]  # one of OUTCOMES
            target=form["target"] or None,
        )
        return query, form, bad_since or bad_until

    @router.get("/audit")
    async def audit(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        query, form, bad = _audit_query(request)
        before = request.query_params.get("before")
        before = before if before and data.is_stream_id(before) else None
        found = await afind_newest(state.redis, query, before=before, limit=100)
        rows = [{**e.to_dict(), "when": iso_time(e.record.time)} for e in found.entries]
        await state.record(
            actor=session.actor, action=AuditAction.AUDIT_READ, outcome="ok", target="console"
        )
        ctx = context(request, session, "audit", rows=rows, form=form, next=found.next_after)
        ctx["error"] = bad
        ctx["export_query"] = request.url.query
        return page("audit", **ctx)

    @router.get("/audit/export")
    async def export(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        query, _form, bad = _audit_query(request)
        if bad:
            return page("error", 422, **context(request, session, "audit", problem=bad))
        await state.record(
            actor=session.actor, action=AuditAction.AUDIT_EXPORT, outcome="ok", target="console"
        )

        async def lines() -> AsyncIterator[bytes]:
            before: str | None = None
            for _ in range(data.EXPORT_PAGES):
                found = await afind_newest(state.redis, query, before=before, limit=500)
                for e in found.entries:
                    row = {**e.to_dict(), "when": iso_time(e.record.time)}
                    yield (json.dumps(row, separators=(",", ":")) + "\n").encode()
                if found.next_after is None:
                    return
                before = found.next_after

        headers = {
            "content-disposition": 'attachment; filename="taskgate-audit.jsonl"',
            "content-security-policy": CSP,
        }
        return StreamingResponse(lines(), media_type="application/jsonl", headers=headers)

    @router.get("/audit/verify")
    async def verify(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        try:
            await limit_verify(state, session.actor, "console")
        except ApiError:
            ctx = context(request, session, "audit", problem="Verification is rate-limited.")
            return page("error", 429, **ctx)
        async with verify_lock:
            try:
                anchor = await newest_anchor(state.settings.anchor_file, state.keys)
                broken = None
            except AuditError as exc:
                anchor, broken = None, exc.reason
            walk = await averify_from_anchor(
                state.redis, state.keys, anchor, limit=state.settings.audit_verify_limit
            )
        result = walk.to_dict()
        if broken is not None:
            result |= {"ok": False, "first_bad": {"reason": broken, "detail": "anchor file"}}
        await state.record(
            actor=session.actor,
            action=AuditAction.AUDIT_VERIFY,
            outcome="ok" if result["ok"] else "error",
            target="console",
        )
        query, form, _bad = _audit_query(request)
        found = await afind_newest(state.redis, query, limit=100)
        rows = [{**e.to_dict(), "when": iso_time(e.record.time)} for e in found.entries]
        ctx = context(request, session, "audit", rows=rows, form=form, next=found.next_after)
        ctx |= {"verify": result, "export_query": ""}
        return page("audit", **ctx)
