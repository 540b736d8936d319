"""``/console``: sign-in and sign-out, the pages, the forms, the console's own assets.

Mounted by :func:`gateway.app.create_app` only when ``TASKGATE_CONSOLE=true``. Only an
operator credential signs in (a client token never does); the routes are left out of the
OpenAPI document (they serve HTML, not the API).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from gateway.console.actions import add_actions
from gateway.console.csrf import LOGIN_COOKIE, login_csrf_ok, set_login_cookie
from gateway.console.keys import add_key_pages
from gateway.console.pages import add_pages
from gateway.console.render import STATIC_DIR, page, redirect
from gateway.console.session import load_session, start_session
from gateway.deps import state_of
from security.audit.actions import AuditAction
from security.errors import StoredStateError

__all__ = ["install_console"]

_MAX_CREDENTIAL = 200


def _login_page(status: int = 200, error: str | None = None, bye: bool = False) -> Response:
    token = secrets.token_urlsafe(32)
    response = page("login", status, operator=None, error=error, bye=bye, nav="", login_csrf=token)
    set_login_cookie(response, token)
    return response


def _login_routes(router: APIRouter) -> None:
    @router.get("/login")
    async def login_form(request: Request) -> Response:
        if await load_session(state_of(request), request) is not None:
            return redirect("/console/overview")
        return _login_page(bye=request.query_params.get("bye") == "1")

    @router.post("/login")
    async def login(request: Request) -> Response:
        state = state_of(request)
        form = await request.form()
        if not login_csrf_ok(request, form.get("csrf")):
            return _login_page(403, "The sign-in form expired; try again.")
        credential = form.get("credential")
        operator = None
        if isinstance(credential, str) and len(credential) <= _MAX_CREDENTIAL:
            try:
                operator = await state.operators.authenticate(credential.strip())
            except StoredStateError:
                operator = None  # a forged record signs nobody in
        if operator is None:
            await state.record(
                actor="anonymous",
                action=AuditAction.AUTH_REFUSED,
                outcome="denied",
                target="console",
                reason="console sign-in",
                request_id="console",
            )
            return _login_page(401, "That is not a valid operator credential.")
        response = redirect("/console/overview")
        await start_session(state, operator, response)
        response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True)
        await state.record(
            actor=operator.actor,
            action=AuditAction.CONSOLE_SIGNIN,
            outcome="ok",
            target=operator.role,
            request_id="console",
        )
        return response


def install_console(app: FastAPI) -> None:
    """Add the console's routes and its static assets to ``app``."""
    router = APIRouter(prefix="/console", include_in_schema=False)
    _login_routes(router)
    add_pages(router)
    add_key_pages(router)
    add_actions(router)
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
