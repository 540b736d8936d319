"""RFC 9457 problem details: the only shape an error leaves the gateway in.

:class:`ApiError` is a problem decided where it is raised (status, kind, detail); the
submission path's refusals are subclasses of it, one per way of being counted, so that
``gateway.http.errors.ERRORS`` labels them by type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match

from gateway.http.field_errors import validation_errors
from gateway.schemas import Problem
from gateway.submission.ratelimit import LimitState, limit_headers
from security.errors import InputRejectedError, LeakDetectedError

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_TYPE_BASE",
    "Answer",
    "ApiError",
    "ClientQueueFull",
    "GlobalQueueFull",
    "InvalidPayload",
    "RateLimited",
    "View",
    "document_problem_schema",
    "document_transport_problems",
    "http_answer",
    "leak_answer",
    "own_answer",
    "problem",
    "rejected_answer",
    "request_invalid_answer",
]

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://taskgate.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response. ``detail`` must never carry a secret or payload value."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


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

    @property
    def reason(self) -> str:
        """The stable code the audit log and the metrics name it by: its kind."""
        return self.kind


class InvalidPayload(ApiError):
    """422: the payload is not a JSON object or does not match the task's schema."""

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(422, "Invalid payload", detail, kind="invalid-payload", **extensions)


class RateLimited(ApiError):
    """429 with RateLimit-* and Retry-After: a submission window of ``states`` is spent."""

    def __init__(self, states: Sequence[LimitState]) -> None:
        which = ", ".join(s.name for s in states if not s.allowed)
        super().__init__(
            429,
            "Too many requests",
            f"rate limit exceeded ({which})",
            kind="rate-limited",
            headers=limit_headers(states),
        )


class ClientQueueFull(ApiError):
    """429: the client already has its cap of tasks waiting."""

    def __init__(self, waiting: int, cap: int) -> None:
        super().__init__(
            429,
            "Too many queued tasks",
            f"this client already has {waiting} tasks waiting (cap {cap})",
            kind="backpressure",
            headers={"Retry-After": "5"},
        )


class GlobalQueueFull(ApiError):
    """503: the gateway is at its queued-task capacity, whoever the client."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "Queue full",
            "the gateway is at its queued-task capacity; try again shortly",
            kind="backpressure",
            headers={"Retry-After": "10"},
        )


def document_transport_problems(doc: dict[str, Any]) -> None:
    """Declare, in an OpenAPI ``doc``, the problems the transport layer adds to any route.

    Routes list their own answers; these come from outside the handler: the body cap
    (413) and an unparseable body (400) on every operation that takes a body, a credential
    in the query string (400) on every operation, and 404 on every operation whose path
    names something (an id that names nothing).
    """
    content: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "Malformed request", **content})
                responses.setdefault("413", {"description": "Body over the cap", **content})
            responses.setdefault(
                "400", {"description": "A credential in the query string", **content}
            )
            if "{" in path:
                responses.setdefault("404", {"description": "Nothing by that name", **content})


def document_problem_schema(doc: dict[str, Any]) -> None:
    """Give every problem+json answer in ``doc`` the named ``Problem`` schema."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    ref = {"$ref": "#/components/schemas/Problem"}
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get(PROBLEM_JSON)
                if isinstance(media, dict) and not media.get("schema"):
                    media["schema"] = dict(ref)


# --- what an error fills in itself (the views of gateway.http.errors' rows) --------------------


class Answer(NamedTuple):
    """What a problem+json answer says."""

    status: int
    title: str
    detail: str
    kind: str
    headers: dict[str, str] | None
    extensions: dict[str, Any]


# The answer for an error, from the request, the error and its row's fixed answer.
View = Callable[[Request, Any, Answer], Answer]


def own_answer(_request: Request, exc: ApiError, _fixed: Answer) -> Answer:
    """An :class:`ApiError` is its own answer."""
    return Answer(exc.status, exc.title, exc.detail, exc.kind, exc.headers, exc.extensions)


def leak_answer(_request: Request, exc: LeakDetectedError, fixed: Answer) -> Answer:
    """The leak guard's message names the field and the kind of secret, never the value."""
    errors = [{"field": exc.field, "message": "looks like a credential"}]
    return fixed._replace(detail=exc.message, extensions={"errors": errors})


def rejected_answer(_request: Request, exc: InputRejectedError, fixed: Answer) -> Answer:
    """The field and the reason code; the message (which may quote the value) stays out."""
    errors = [{"field": exc.field, "message": exc.reason}]
    detail = f"{exc.field or 'payload'}: {exc.reason}"
    return fixed._replace(detail=detail, extensions={"errors": errors})


def request_invalid_answer(request: Request, exc: RequestValidationError, fixed: Answer) -> Answer:
    """Field paths and kinds; on ``/v1/token`` the OAuth error (RFC 6749 section 5.2: a
    malformed grant is 400)."""
    errors = validation_errors(list(exc.errors()))
    if request.url.path == "/v1/token":
        extensions = {"error": "invalid_request", "errors": errors}
        detail = "the token request is malformed or incomplete"
        return Answer(
            400, "Token request refused", detail, "oauth-invalid_request", None, extensions
        )
    return fixed._replace(extensions={"errors": errors})


_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 403: "Forbidden"}
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this request's path (RFC 9110 section 15.5.6)."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def http_answer(request: Request, exc: HTTPException, _fixed: Answer) -> Answer:
    """Starlette's HTTP errors (404, 405...) as ``http-<status>`` problems."""
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; list them all.
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    title = _HTTP_TITLES.get(exc.status_code, "Error")
    return Answer(exc.status_code, title, detail, f"http-{exc.status_code}", headers, {})
