"""Map every failure to RFC 9457 problem+json: the right status, no trace, no echoed value.

Domain errors carry a precise ``reason`` for the audit log and the server log; what a
client sees is deliberately coarser (one opaque 401 for every token failure).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gateway.middleware import SECURITY_HEADERS
from gateway.problems import problem
from security.errors import (
    AuditError,
    InputRejectedError,
    KeyRingError,
    LeakDetectedError,
    SealError,
    TaskgateError,
    TokenError,
    VaultError,
)

__all__ = ["ApiError", "install_error_handlers", "validation_errors"]

log = logging.getLogger("taskgate.gateway")


class ApiError(Exception):
    """An error the API reports as-is (status, stable kind, safe detail, extra headers)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.headers = headers
        self.extensions = extensions


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def _respond(request: Request, error: ApiError) -> JSONResponse:
    return problem(
        error.status,
        error.title,
        error.detail,
        kind=error.kind,
        instance=request.url.path,
        headers=error.headers,
        request_id=_rid(request),
        **error.extensions,
    )


# What a 422 says about each kind of validation error: fixed text, filled only from numeric
# limits. pydantic's own messages can name internal classes or carry an object's repr (with
# its heap address); they never reach a client.
_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
    "string_type": "must be a string",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "string_pattern_mismatch": "does not have the expected format",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "list_type": "must be a list",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be one of the allowed values",
    "enum": "must be one of the allowed values",
    "url_type": "must be a URL",
    "url_parsing": "must be a valid URL",
    "url_scheme": "must use an allowed URL scheme",
    "json_invalid": "is not valid JSON",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "datetime_type": "must be a date and time",
    "datetime_parsing": "must be a date and time",
    "forbidden_character": "contains a control, line-break or invisible formatting character",
    "email_too_long": "is too long for an email address",
    "email_control_character": "contains whitespace or a control character",
    "email_multiple": "must be exactly one email address",
    "email_invalid": "is not a valid email address",
    "unsafe_url": "is a URL that is not allowed",
    "value_error": "is not valid",
}
_NUMERIC_CTX = ("min_length", "max_length", "gt", "ge", "lt", "le")


def _message(kind: str, ctx: Any) -> str:
    template = _MESSAGES.get(kind, "is not valid")
    numbers = {
        name: value
        for name in _NUMERIC_CTX
        if isinstance(ctx, dict)
        and isinstance(value := ctx.get(name), int | float)
        and not isinstance(value, bool)
    }
    try:
        return template.format(**numbers)
    except (KeyError, IndexError):
        return "is not valid"


def validation_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Field paths and error kinds only: never the rejected input nor pydantic's own text."""
    out = []
    for err in errors[:50]:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        kind = str(err.get("type", "invalid"))
        if kind not in _MESSAGES:
            kind = "invalid"
        out.append(
            {
                "field": ".".join(loc)[:200] or "(body)",
                "kind": kind,
                "message": _message(kind, err.get("ctx")),
            }
        )
    return out


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this request's path (RFC 9110 section 15.5.6)."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into problem+json."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _respond(request, exc)

    @app.exception_handler(TokenError)
    async def token_error(request: Request, exc: TokenError) -> JSONResponse:
        log.info("token refused (%s) rid=%s", exc.reason, _rid(request))
        return _respond(
            request,
            ApiError(
                401,
                "Unauthorized",
                "missing, invalid, expired or revoked credentials",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ),
        )

    @app.exception_handler(LeakDetectedError)
    async def leak(request: Request, exc: LeakDetectedError) -> JSONResponse:
        return _respond(
            request,
            ApiError(
                422,
                "Secret-looking value in a field not declared secret",
                exc.message,
                kind="leak-detected",
                errors=[{"field": exc.field, "message": "looks like a credential"}],
            ),
        )

    @app.exception_handler(InputRejectedError)
    async def rejected(request: Request, exc: InputRejectedError) -> JSONResponse:
        return _respond(
            request,
            ApiError(
                422,
                "Invalid payload",
                f"{exc.field or 'payload'}: {exc.reason}",
                kind="invalid-payload",
                errors=[{"field": exc.field, "message": exc.reason}],
            ),
        )

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/v1/token":  # RFC 6749 section 5.2: a malformed grant is 400
            return _respond(
                request,
                ApiError(
                    400,
                    "Token request refused",
                    "the token request is malformed or incomplete",
                    kind="oauth-invalid_request",
                    error="invalid_request",
                    errors=validation_errors(list(exc.errors())),
                ),
            )
        return _respond(
            request,
            ApiError(
                422,
                "Invalid request",
                "the request failed validation",
                kind="invalid-request",
                errors=validation_errors(list(exc.errors())),
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            404: "Not found",
            405: "Method not allowed",
            401: "Unauthorized",
            403: "Forbidden",
        }
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; list them all.
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return _respond(
            request,
            ApiError(
                exc.status_code,
                titles.get(exc.status_code, "Error"),
                detail,
                kind=f"http-{exc.status_code}",
                headers=headers,
            ),
        )

    @app.exception_handler(redis.RedisError)
    async def storage_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s rid=%s", type(exc).__name__, _rid(request))
        return _respond(
            request,
            ApiError(
                503,
                "Service unavailable",
                "the gateway's storage is unreachable; nothing was accepted",
                kind="unavailable",
                headers={"Retry-After": "5"},
            ),
        )

    @app.exception_handler(AuditError)
    async def audit_down(request: Request, exc: AuditError) -> JSONResponse:
        log.error("audit log unavailable (%s) rid=%s", exc.reason, _rid(request))
        return _respond(
            request,
            ApiError(
                503,
                "Service unavailable",
                "the audit log is unreachable; nothing was accepted",
                kind="unavailable",
                headers={"Retry-After": "5"},
            ),
        )

    @app.exception_handler(TaskgateError)
    async def domain_error(request: Request, exc: TaskgateError) -> JSONResponse:
        # Seal/vault/key failures on the gateway side are server faults, never client input.
        level = (
            logging.ERROR
            if isinstance(exc, SealError | VaultError | KeyRingError)
            else logging.WARNING
        )
        log.log(level, "%s (%s) rid=%s", type(exc).__name__, exc.reason, _rid(request))
        return _respond(
            request,
            ApiError(500, "Internal error", "the request could not be completed", kind="internal"),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s rid=%s", type(exc).__name__, _rid(request))
        response = _respond(
            request,
            ApiError(500, "Internal error", "the request could not be completed", kind="internal"),
        )
        # Starlette answers unhandled errors outside every middleware: add what the
        # request-id and security-header middleware would have added.
        for name, value in (*SECURITY_HEADERS, (b"x-request-id", _rid(request).encode())):
            response.headers.setdefault(name.decode(), value.decode())
        return response
