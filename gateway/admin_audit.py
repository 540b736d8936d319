"""What every admin route shares: its audit record, its refusal of a tampered stored record,
and how it declares its answer in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores import checks as stored
from security.audit.actions import AuditAction
from security.errors import StoredStateError

__all__ = ["CONFLICT", "admin_audit", "answers", "refused"]

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "A stored record failed its integrity check (audited), or the state "
        "does not allow the change",
        "content": {"application/problem+json": {}},
    }
}


def answers(
    model: type[BaseModel],
    description: str,
    status: int = 200,
    errors: dict[int | str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A route's ``response_model``/``responses`` arguments: ``model`` names the answer's
    schema (declared, not run on each answer: the handlers build the JSON), ``errors``
    its own problem answers beyond the router's."""
    declared = {status: {"model": model, "description": description}, **(errors or {})}
    return {"response_model": None, "responses": declared}


async def admin_audit(
    state: GatewayState,
    actor: str,
    action: AuditAction,
    target: str,
    rid: str,
    *,
    outcome: str = "ok",
    reason: str = "",
) -> None:
    """Audit one admin call: who, what, on what, with which outcome."""
    await state.record(
        actor=actor, action=action, outcome=outcome, target=target, reason=reason, request_id=rid
    )


async def refused(
    state: GatewayState, exc: StoredStateError, target: str, rid: str, actor: str = "admin"
) -> ApiError:
    """Audit a stored record that failed its check; the 409 to raise for it."""
    await stored.audit_refused(state, exc, actor=actor, target=target, request_id=rid)
    return stored.conflict(exc)
