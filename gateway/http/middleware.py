"""Transport concerns as pure ASGI middleware, declared in one list, outermost first.

:func:`gateway_middleware` is the gateway's list: the first entry sees a request first and
its response last. :func:`install_middleware` builds an app's stack from such a list (in
one loop over ``reversed(...)``, as Starlette's own ``build_middleware_stack`` nests
them), so the declared order is the execution order.

* :class:`RequestIdMiddleware` - ``X-Request-ID``: validated when given, generated when not.
* :class:`SecurityHeadersMiddleware` - HSTS, ``no-store``, ``nosniff``, no framing.
* :class:`BodySizeLimitMiddleware` - the body cap is enforced *while reading*: a declared
  ``Content-Length`` over the cap or a stream that grows past it gets 413 before any parsing.
* :class:`QueryCredentialsMiddleware` - a credential in the query string (``client_secret``,
  ``access_token``...) is refused with 400 on every route: URLs end up in access logs,
  proxies and browser history. (The access log prints paths without their query anyway:
  ``gateway.http.accesslog``.)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.fastlane import Endpoint, SubmitFastLane
from gateway.http.problems import PROBLEM_JSON, PROBLEM_TYPE_BASE

__all__ = [
    "CREDENTIAL_PARAMETERS",
    "BodySizeLimitMiddleware",
    "QueryCredentialsMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "gateway_middleware",
    "install_middleware",
    "request_id_var",
    "request_scope_var",
]

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# The request's ASGI scope, so that a refusal recorded deep in a handler can name the
# client address it came from (gateway.refusals) without every caller passing it.
request_scope_var: ContextVar[Scope | None] = ContextVar("request_scope", default=None)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


async def _send_problem(
    scope: Scope, send: Send, status: int, title: str, detail: str, *, kind: str
) -> None:
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + kind,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
            "request_id": request_id_var.get(),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Give every request an id (client-supplied if well-formed) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        text = given.decode("latin-1") if given else ""
        request_id = text if _REQUEST_ID.fullmatch(text) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope_token = request_scope_var.set(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            request_scope_var.reset(scope_token)


class SecurityHeadersMiddleware:
    """Add the security headers to every response (errors included)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = True) -> None:
        self.app = app
        self.headers = [h for h in SECURITY_HEADERS if hsts or h[0] != b"strict-transport-security"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_secured)


class BodySizeLimitMiddleware:
    """413 problem+json for bodies over ``limit_for(scope)`` bytes, checked while reading."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS", "DELETE"}:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _send_problem(
                    scope, send, 400, "Bad request", "invalid Content-Length", kind="bad-request"
                )
                return
            if too_big:
                await _send_problem(
                    scope,
                    send,
                    413,
                    "Payload too large",
                    f"the body limit is {limit} bytes",
                    kind="too-large",
                )
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as exc:
            if not started:
                await _send_problem(
                    scope,
                    send,
                    413,
                    "Payload too large",
                    f"the body limit is {exc.limit} bytes",
                    kind="too-large",
                )


# Parameter names that carry a credential in OAuth 2.0 (RFC 6749, RFC 6750 section 2.3,
# RFC 7523) or by common convention; compared case-insensitively, after percent-decoding.
CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "client_assertion",
        "client_id",
        "client_secret",
        "id_token",
        "password",
        "refresh_token",
        "secret",
        "token",
    }
)


class QueryCredentialsMiddleware:
    """400 problem+json for any request whose query string names a credential parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query and _names_a_credential(query):
            await _send_problem(
                scope,
                send,
                400,
                "Bad request",
                "credentials are not accepted in the query string; send them in the body"
                " or the Authorization header",
                kind="credentials-in-query",
            )
            return
        await self.app(scope, receive, send)


def _names_a_credential(query: bytes) -> bool:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=None)
    return any(name.strip().lower() in CREDENTIAL_PARAMETERS for name, _ in pairs)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def header_value(scope: Scope, name: str) -> str | None:
    """A request header as text, for middleware-level code."""
    raw = _header(scope, name.lower().encode())
    return raw.decode("latin-1") if raw is not None else None


def gateway_middleware(
    *,
    limit_for: Callable[[Scope], int],
    cors_origins: Sequence[str],
    submit_endpoints: Mapping[str, Endpoint],
    exception_handlers: Mapping[Any, Any],
) -> list[Middleware]:
    """The gateway's transport layers, outermost first: ids on everything, security
    headers on everything (errors included), CORS for the listed origins, no credentials
    in query strings, the body cap, then the submission routes without FastAPI's
    per-request layers (same exception handlers)."""
    cors = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        )
    ]
    return [
        Middleware(RequestIdMiddleware),
        Middleware(SecurityHeadersMiddleware),
        *(cors if cors_origins else []),
        Middleware(QueryCredentialsMiddleware),
        Middleware(BodySizeLimitMiddleware, limit_for=limit_for),
        Middleware(
            SubmitFastLane, endpoints=submit_endpoints, exception_handlers=exception_handlers
        ),
    ]


def install_middleware(app: Starlette, stack: Sequence[Middleware]) -> None:
    """Add ``stack`` (outermost first) to ``app``: each ``add_middleware`` wraps the ones
    added before it, so they go in innermost first."""
    for entry in reversed(stack):
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
