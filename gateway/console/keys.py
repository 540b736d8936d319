"""The console's Keys page, and key rotation from it where the gateway runs on the key host.

A gateway normally holds only its exported bundle (``docs/key-bundles.md``): a key it wrote
there would be unknown to every worker, so the page shows the procedure and no button.
With ``TASKGATE_CONSOLE_KEY_HOST_DIR`` (the key host's full keys folder) and
``TASKGATE_CONSOLE_ROLES_DIR`` (the role bundles, laid out like ``<state>/roles``), an admin
may rotate from the page: the same library call as `taskgate keys rotate`
(:func:`security.keyrotation.rotate_and_export`), then every bundle exported again,
audited as ``keys.rotate`` under the operator's name. The answer names the new key ids
and the restart order; never key material.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.console.actions import audit_action, checked_form
from gateway.console.pages import context, signed_in, when
from gateway.console.render import page, redirect
from gateway.state import GatewayState
from security.audit.actions import AuditAction
from security.errors import KeyRingError
from security.keyrotation import BUNDLE_ORDER, RESTART_ORDER, audit_target, rotate_and_export
from security.keys import Purpose
from security.keystore import list_keys

__all__ = ["add_key_pages"]

ALL = "all"
_ACTION = AuditAction.KEYS_ROTATE  # the action `taskgate keys rotate` audits


def _key_host(state: GatewayState) -> Path | None:
    return state.settings.console_key_host_dir


def _rows(state: GatewayState) -> list[dict[str, Any]]:
    """Every key of the key host's folder (else of this gateway's own folder): id, purpose,
    age, state, and whether this gateway has it loaded (a newer key shows up here before a
    restart makes the gateway use it)."""
    loaded = {k.kid for keys in state.keys.key_sets() for k in keys}
    folder = _key_host(state) or state.settings.keys_dir or state.settings.state_dir
    try:
        infos: list[dict[str, Any]] = [dict(vars(info)) for info in list_keys(folder)]
    except (KeyRingError, OSError):
        infos = [
            {"kid": k.kid, "purpose": str(s.purpose), "created_at": None, "retired": k.retired}
            for s in state.keys.key_sets()
            for k in s
        ]
    now = time.time()
    rows = []
    for row in infos:
        created, _bad = when(str(row.get("created_at") or ""))
        age = None if created is None else now - created
        rows.append(
            {**row, "purpose": str(row["purpose"]), "age": age, "loaded": row["kid"] in loaded}
        )
    return rows


def _purposes(choice: str) -> list[Purpose] | None:
    """``all`` (None: every purpose) or one purpose; ValueError for anything else."""
    return None if choice == ALL else [Purpose(choice)]


def add_key_pages(router: APIRouter) -> None:
    """Add the Keys page and its rotation form to the console router."""

    @router.get("/keys")
    async def keys(request: Request) -> Response:
        state, session = await signed_in(request)
        if session is None:
            return redirect("/console/login")
        ctx = context(request, session, "keys", keys=_rows(state))
        ctx |= {"rotation": _key_host(state) is not None, "purposes": [str(p) for p in Purpose]}
        return page("keys", **ctx)

    @router.post("/keys/rotate")
    async def rotate(request: Request) -> Response:
        checked = await checked_form(request)
        if isinstance(checked, Response):
            return checked
        state, session, form = checked
        choice = form.get("purpose")
        choice = choice if isinstance(choice, str) else ""
        key_host = _key_host(state)
        if key_host is None:
            await audit_action(
                state, session, _ACTION, choice[:64] or ALL, outcome="denied", reason="no key host"
            )
            problem = (
                "This gateway holds only its own key bundle, so it cannot rotate keys: "
                "rotate on the key host with `taskgate keys rotate`."
            )
            return page("error", 403, **context(request, session, "keys", problem=problem))
        try:
            purposes = _purposes(choice)
        except ValueError:
            problem = "Choose one purpose, or all."
            return page("error", 422, **context(request, session, "keys", problem=problem))
        target = audit_target(purposes)
        if form.get("confirm") != "yes":
            return page("keys_confirm", **context(request, session, "keys", choice=choice))
        roles_dir = state.settings.console_roles_dir
        try:
            done = await asyncio.to_thread(rotate_and_export, key_host, purposes, roles_dir)
        except KeyRingError as exc:
            await audit_action(state, session, _ACTION, target, outcome="error", reason=exc.reason)
            problem = f"Keys not rotated as asked: {exc.message}"
            return page("error", 500, **context(request, session, "keys", problem=problem))
        exported = ",".join(done.exported) or "none"
        await audit_action(state, session, _ACTION, target, reason=f"bundles: {exported}")
        ctx = context(request, session, "keys", rotation=done, restart_order=RESTART_ORDER)
        ctx["missing"] = [r for r in BUNDLE_ORDER if r not in done.exported]
        return page("keys_rotated", **ctx)
