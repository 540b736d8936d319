"""CSRF protection of the console's forms.

Every state-changing form carries the session's CSRF token (``csrf``), compared in
constant time; the sign-in form (no session yet) uses a double-submit token: a random
value in the ``__Host-taskgate-login`` cookie that the form must repeat. SameSite=Strict
cookies and a same-origin check of ``Origin`` (when the browser sends it) come on top.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from gateway.console.session import ConsoleSession, set_cookie

__all__ = ["LOGIN_COOKIE", "csrf_ok", "login_csrf_ok", "set_login_cookie"]

LOGIN_COOKIE = "__Host-taskgate-login"
_LOGIN_MAX_AGE = 600


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not every request carries one; the token still has to match
        return True
    host = request.headers.get("host", "")
    return origin == f"https://{host}"


def _equal(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given, expected)


def csrf_ok(request: Request, session: ConsoleSession, given: object) -> bool:
    """The form's token is the session's and the request comes from our own origin."""
    return _same_origin(request) and _equal(given, session.csrf)


def set_login_cookie(response: Response, token: str) -> None:
    """The sign-in form's double-submit token, in its cookie (10 minutes)."""
    set_cookie(response, LOGIN_COOKIE, token, _LOGIN_MAX_AGE)


def login_csrf_ok(request: Request, given: object) -> bool:
    """The sign-in form repeats its cookie's token, from our own origin."""
    return _same_origin(request) and _equal(given, request.cookies.get(LOGIN_COOKIE, ""))
