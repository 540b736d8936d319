"""Typed errors of the taskgate SDK, mapped from the gateway's RFC 9457 problem details.

::

    TaskgateClientError                 anything the SDK raises
    ├── ConnectionFailed                the gateway could not be reached (after the retries)
    ├── WaitTimeout                     ``wait()`` ran out of time; ``.task`` is the last view
    └── ApiError                        the gateway answered with a problem (``.status``, ...)
        ├── BadRequest          400     (``.error``: the OAuth2 error code of a token refusal)
        ├── Unauthorized        401
        ├── Forbidden           403
        ├── NotFound            404
        ├── Conflict            409
        ├── PayloadTooLarge     413
        ├── ValidationFailed    422     ``.errors``: :class:`FieldError` with field paths
        ├── RateLimited         429     ``.retry_after`` in seconds (or None)
        ├── ServerError         500
        └── Unavailable         503     ``.retry_after`` in seconds (or None)

Messages carry the gateway's status, title, detail and request id - never a credential: the
gateway's problem details hold no submitted value, and the SDK adds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskgate.client.models import Task

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "FieldError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "TaskgateClientError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
    "error_from_problem",
]


class TaskgateClientError(Exception):
    """Base of every error the SDK raises."""


class ConnectionFailed(TaskgateClientError):
    """No answer from the gateway (connection refused or dropped, TLS failure, timeout)."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"cannot reach the gateway at {url} ({cause})")
        self.url = url
        self.cause = cause


class WaitTimeout(TaskgateClientError):
    """The task did not reach a final state in time; ``task`` is its last known view."""

    def __init__(self, task: Task, timeout: float) -> None:
        super().__init__(f"task {task.id} still {task.status} after {timeout:g}s")
        self.task = task
        self.timeout = timeout


@dataclass(frozen=True, slots=True)
class FieldError:
    """One refused field of a 422: its dotted path, the error kind and a fixed message."""

    field: str
    kind: str
    message: str


class ApiError(TaskgateClientError):
    """The gateway refused the request with an RFC 9457 problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str = "",
        request_id: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        rid = f" (request {request_id})" if request_id else ""
        super().__init__(f"{status} {title}: {detail}{rid}")
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind
        self.request_id = request_id
        self.problem: dict[str, Any] = dict(problem or {})


class BadRequest(ApiError):
    """400: a malformed request, or a token request the gateway refused (``error``)."""

    @property
    def error(self) -> str | None:
        value = self.problem.get("error")
        return value if isinstance(value, str) else None


class Unauthorized(ApiError):
    """401: wrong client credentials, or a missing, expired or revoked token."""


class Forbidden(ApiError):
    """403: the token lacks the scope (or the client may not run that task)."""


class NotFound(ApiError):
    """404: no such task (or not the caller's: the gateway does not say which)."""


class Conflict(ApiError):
    """409: e.g. cancelling a task that already finished or cannot stop while running."""


class PayloadTooLarge(ApiError):
    """413: the payload is over the task's or the gateway's size cap."""


class ValidationFailed(ApiError):
    """422: the payload or a parameter failed validation; ``errors`` names each field."""

    @property
    def errors(self) -> tuple[FieldError, ...]:
        items = self.problem.get("errors")
        if not isinstance(items, list):
            return ()
        return tuple(
            FieldError(
                field=str(item.get("field") or "(body)"),
                kind=str(item.get("kind", "invalid")),
                message=str(item.get("message", "")),
            )
            for item in items
            if isinstance(item, dict)
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted paths of the refused fields, e.g. ``("recipient",)``."""
        return tuple(error.field for error in self.errors)


class _RetryAfter(ApiError):
    """A refusal that says when to try again."""

    retry_after: float | None = None


class RateLimited(_RetryAfter):
    """429: over a rate or queue limit; ``retry_after`` seconds (None if not said)."""


class Unavailable(_RetryAfter):
    """503: the gateway fails closed (storage unreachable, token checks saturated)."""


class ServerError(ApiError):
    """500 or another unexpected status."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def error_from_problem(
    status: int, body: Any, *, retry_after: float | None = None, reason: str = ""
) -> ApiError:
    """The typed error for a refusal with ``status`` and (ideally) a problem+json ``body``."""
    problem = body if isinstance(body, dict) else {}
    cls = _BY_STATUS.get(status, ServerError)
    error = cls(
        status,
        str(problem.get("title") or reason or "Error"),
        str(problem.get("detail") or "the gateway refused the request"),
        kind=str(problem.get("type", "")).rsplit("/", 1)[-1],
        request_id=str(problem["request_id"]) if problem.get("request_id") else None,
        problem=problem,
    )
    if isinstance(error, _RetryAfter):
        error.retry_after = retry_after
    return error
