"""Console sessions: server-side, in Redis, behind an opaque cookie.

Signing in with an operator credential creates a session: 256 random bits in the cookie
``__Host-taskgate-console`` (HttpOnly, Secure, SameSite=Strict, Path=/), and in Redis only
the SHA-256 of that value (``tg:console:session:{sha256}``), so someone reading Redis
cannot take a session over. The record holds the operator's name and role, the CSRF token
of the session and when it was created and last used.

A session ends when it has been idle for ``console_idle_timeout`` seconds (the Redis key
expires; each request extends it), after ``console_session_lifetime`` at the latest, on
sign-out, or when its operator is revoked (re-checked on every request).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.state import GatewayState
from gateway.stores.checks import audit_refused
from gateway.stores.operators import Operator
from security.errors import StoredStateError
from workers.contract.keys import console_session_key

__all__ = ["COOKIE", "ConsoleSession", "end_session", "load_session", "start_session"]

COOKIE = "__Host-taskgate-console"
_MAX_COOKIE = 100


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in operator and the CSRF token their forms carry."""

    operator: Operator
    csrf: str
    created: float
    key: str

    @property
    def actor(self) -> str:
        return self.operator.actor


def _key(cookie: str) -> str:
    return console_session_key(hashlib.sha256(cookie.encode()).hexdigest())


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    """A ``__Host-`` cookie: Secure, HttpOnly, SameSite=Strict, Path=/ and no Domain."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


async def start_session(state: GatewayState, operator: Operator, response: Response) -> str:
    """Create a session for ``operator``, set its cookie on ``response``; its CSRF token."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = time.time()
    record = {"name": operator.name, "role": operator.role, "csrf": csrf, "created": now}
    await state.redis.set(_key(cookie), json.dumps(record), ex=state.settings.console_idle_timeout)
    set_cookie(response, COOKIE, cookie, None)  # a browser-session cookie; Redis ends it
    return csrf


async def load_session(state: GatewayState, request: Request) -> ConsoleSession | None:
    """The request's live session, extended by the idle timeout; None if there is none,
    it expired, its lifetime is over or its operator is no longer valid."""
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or len(cookie) > _MAX_COOKIE:
        return None
    key = _key(cookie)
    raw = await state.redis.get(key)
    if raw is None:
        return None
    try:
        record: dict[str, Any] = json.loads(raw)
        name, role, csrf = str(record["name"]), str(record["role"]), str(record["csrf"])
        created = float(record["created"])
    except (ValueError, KeyError, TypeError):
        await state.redis.delete(key)
        return None
    if time.time() - created > state.settings.console_session_lifetime:
        await state.redis.delete(key)
        return None
    try:
        operator = await state.operators.current(name)
    except StoredStateError as exc:  # a forged operator record: refused, audited, signed out
        await audit_refused(state, exc, actor=name, target=f"operator:{name}", request_id="-")
        operator = None
    if operator is None or operator.role != role:
        await state.redis.delete(key)
        return None
    await state.redis.expire(key, state.settings.console_idle_timeout)
    return ConsoleSession(operator=operator, csrf=csrf, created=created, key=key)


async def end_session(state: GatewayState, session: ConsoleSession, response: Response) -> None:
    """Sign out: the server-side record goes, and the cookie is cleared."""
    await state.redis.delete(session.key)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
