"""``/v1/admin/audit`` and ``/v1/admin/audit/verify`` (the admin token, or ``audit:read``).

The verify is bounded and rate-limited: one call checks at most ``limit`` entries
(``TASKGATE_AUDIT_VERIFY_LIMIT`` at most), starting at the newest anchor the gateway took
(incremental: what came since it was verified), at the start of the live log
(``from=start``) or after a cursor (``after``: the previous call's ``next``); each caller
gets ``TASKGATE_AUDIT_VERIFY_RATE_LIMIT`` calls (429 past it), and one process runs one
verify at a time (429 while busy). The newest anchor must still be reached: a wiped log,
a cut tail or a rewound head fails with ``truncated`` and the missing range.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from gateway.admin_audit import answers
from gateway.anchoring import VerifyLimiter, averify_from_anchor, newest_anchor
from gateway.deps import AdminOrAuditor, RequestId, State
from gateway.http.errors import ApiError
from gateway.schemas_admin import AuditPage, AuditVerification
from gateway.state import GatewayState
from security.audit import AuditQuery, afind_records
from security.audit.actions import AuditAction
from security.audit.times import iso_time, parse_time
from security.errors import AuditError

__all__ = ["add_audit_routes", "limit_verify", "verify_lock"]

# 19 digits a part: always within the 64 bits Redis holds (a wider one would be a 503)
_ID = r"^\d{1,19}-\d{1,19}$"
_busy = asyncio.Lock()
verify_lock = _busy  # one verify at a time per process, the console's included


async def _limit(state: GatewayState, actor: str, rid: str) -> None:
    limiter = state.verify_limiter or VerifyLimiter(
        state.redis, state.settings.audit_verify_rate_limit
    )
    state.verify_limiter = limiter
    allowed, reset = await limiter.allow(actor)
    if allowed and not _busy.locked():
        return
    await state.record(
        actor=actor,
        action=AuditAction.RATE_LIMIT_HIT,
        outcome="denied",
        target="audit.verify",
        reason="verify limit" if not allowed else "verify busy",
        request_id=rid,
    )
    raise ApiError(
        429,
        "Too many requests",
        "audit verification is rate-limited; try again later",
        kind="rate-limited",
        headers={"Retry-After": str(reset if not allowed else 1)},
    )


_WHEN = "ISO 8601 (2026-12-07T10:00Z; no zone: UTC) or Unix seconds"
# What the schema promises: an RFC 3339 date-time, a date, or Unix seconds (the parser also
# takes other ISO 8601 spellings, such as a time without seconds or zone).
_WHEN_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": r"^\d{1,11}(?:\.\d{1,6})?$"},
    ]
}


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except AuditError as exc:
        raise ApiError(422, "Invalid request", str(exc), kind="invalid-request") from None


async def limit_verify(state: GatewayState, actor: str, rid: str) -> None:
    """The verify rate limit (429 past it, or while another verify runs), audited."""
    await _limit(state, actor, rid)


def add_audit_routes(router: APIRouter) -> None:
    """Add the audit listing and the bounded verify to the admin router."""

    @router.get(
        "/audit",
        summary="Audit records, filtered and paged (admin or audit:read)",
        **answers(AuditPage, "One page of records, oldest first"),
    )
    async def audit(
        actor_name: AdminOrAuditor,
        *,
        state: State,
        rid: RequestId,
        since: Annotated[
            str | None, Query(max_length=64, description=_WHEN, json_schema_extra=_WHEN_SCHEMA)
        ] = None,
        until: Annotated[
            str | None, Query(max_length=64, description=_WHEN, json_schema_extra=_WHEN_SCHEMA)
        ] = None,
        actor: Annotated[str | None, Query(max_length=128)] = None,
        action: Annotated[str | None, Query(max_length=128)] = None,
        outcome: Annotated[str | None, Query(pattern=r"^(allowed|denied|ok|error)$")] = None,
        target: Annotated[str | None, Query(max_length=128)] = None,
        after: Annotated[str | None, Query(pattern=_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        query = AuditQuery(
            since=_when(since),
            until=_when(until),
            actor=actor,
            action=action,
            outcome=outcome,  # type: ignore[arg-type]  # the pattern allows only outcomes
            target=target,
        )
        page = await afind_records(state.redis, query, after=after, limit=limit)
        await state.record(
            actor=actor_name,
            action=AuditAction.AUDIT_READ,
            outcome="ok",
            target="audit",
            request_id=rid,
        )
        items = [{**e.to_dict(), "when": iso_time(e.record.time)} for e in page.entries]
        return {"items": items, "next": page.next_after}

    @router.get(
        "/audit/verify",
        summary="Verify the chain, bounded: from the newest checkpoint, the start or a cursor",
        **answers(
            AuditVerification,
            "The walk's outcome (a broken chain is `ok: false`, not an error)",
            errors={
                429: {
                    "description": "Rate-limited, or another verify runs",
                    "content": {"application/problem+json": {}},
                }
            },
        ),
    )
    async def audit_verify(
        actor_name: AdminOrAuditor,
        *,
        state: State,
        rid: RequestId,
        start: Annotated[Literal["checkpoint", "start"], Query(alias="from")] = "checkpoint",
        after: Annotated[str | None, Query(pattern=_ID)] = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        await _limit(state, actor_name, rid)
        bound = min(limit or state.settings.audit_verify_limit, state.settings.audit_verify_limit)
        broken: str | None = None
        async with _busy:
            try:
                anchor = await newest_anchor(state.settings.anchor_file, state.keys)
            except AuditError as exc:  # a forged or damaged anchor file: say so, fail closed
                anchor, broken = None, exc.reason
            walk = await averify_from_anchor(
                state.redis,
                state.keys,
                anchor,
                after=after,
                from_start=start == "start",
                limit=bound,
            )
        body = walk.to_dict()
        body["checkpoint_seq"] = None if anchor is None else anchor.checkpoint.seq
        if broken is not None:
            body |= {
                "ok": False,
                "first_bad": {
                    "index": 0,
                    "stream_id": None,
                    "reason": broken,
                    "detail": "anchor file",
                },
            }
        await state.record(
            actor=actor_name,
            action=AuditAction.AUDIT_VERIFY,
            outcome="ok" if body["ok"] else "error",
            target="audit",
            reason=f"seq {walk.first_seq}-{walk.report.head_seq}",
            request_id=rid,
        )
        return body
