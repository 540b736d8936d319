"""One table from error type to how the gateway answers, logs, audits and counts it.

:data:`ERRORS` has one :class:`ErrorRule` per error type the gateway can meet: the
problem+json a client gets (status, problem type, title, fixed detail, headers), the
server-log line, and for a refused submission the audit action and the metric labels.
:func:`install_error_handlers` registers one exception handler per row, and the
submission's stage runner (``gateway.submission.stages.run_stages``, with
``gateway.submission.refusals``) audits and counts a refusal by the same row. Domain errors
carry a precise ``reason`` for the audit log and the server log; what a client sees is
deliberately coarser (one opaque 401 for every token failure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.http.field_errors import validation_errors
from gateway.http.middleware import SECURITY_HEADERS
from gateway.http.problems import (
    Answer,
    ApiError,
    ClientQueueFull,
    GlobalQueueFull,
    InvalidPayload,
    RateLimited,
    View,
    http_answer,
    leak_answer,
    own_answer,
    problem,
    rejected_answer,
    request_invalid_answer,
)
from gateway.stores.client_rules import ClientError
from gateway.stores.operators import OperatorError
from gateway.submission.ratelimit import LimitState
from gateway.token_guard import HashBusyError
from security.audit.actions import AuditAction
from security.errors import (
    AuditChainBrokenError,
    AuditError,
    ConfigError,
    InputRejectedError,
    KeyRetiredError,
    KeyRingError,
    LeakDetectedError,
    NotSealedError,
    SealBindingError,
    SealError,
    SealExpiredError,
    StoredStateError,
    TaskgateError,
    TokenError,
    UnsafeURLError,
    VaultError,
)

__all__ = [
    "ERRORS",
    "ApiError",
    "ErrorRule",
    "install_error_handlers",
    "respond",
    "rule_for",
    "validation_errors",
]

log = logging.getLogger("taskgate.gateway")

# A row holds its audit action: a member read off the enum costs ~80 ns each time.
_SUBMIT = AuditAction.TASK_SUBMIT
_RATE_LIMIT_HIT = AuditAction.RATE_LIMIT_HIT


def _no_scopes(_limits: Sequence[LimitState]) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How the gateway answers, logs, audits and counts the ``errors`` of one row.

    The answer is the row's fixed text, or what ``view`` makes of it and the error (an
    :class:`ApiError`'s own status and detail, an input error's field).
    ``log_line`` is a template over ``{name}`` (the error's type) and ``{reason}``. A refused
    submission is audited as ``action`` with the error's ``reason`` (followed by ``at
    <field>`` when ``names_field``); its ``taskgate_submissions_total`` outcome is that
    reason, ``check`` its ``taskgate_input_refusals_total`` label and ``scopes`` its
    ``taskgate_limit_refusals_total`` labels.
    """

    errors: tuple[type[Exception], ...]
    status: int = 500
    kind: str = "internal"
    title: str = "Internal error"
    detail: str = "the request could not be completed"
    headers: Mapping[str, str] | None = None
    view: View | None = None
    log_level: int | None = None
    log_line: str = ""
    action: AuditAction = _SUBMIT
    names_field: bool = False
    check: str | None = None
    scopes: Callable[[Sequence[LimitState]], list[str]] = _no_scopes
    outside_middleware: bool = False  # answered by Starlette's server-error layer

    def answer(self, request: Request, exc: Any) -> Answer:
        """The problem's parts for ``exc``: the row's text, or what ``view`` makes of it."""
        headers = dict(self.headers) if self.headers is not None else None
        fixed = Answer(self.status, self.title, self.detail, self.kind, headers, {})
        return fixed if self.view is None else self.view(request, exc, fixed)

    def audit_reason(self, exc: Any) -> str:
        """The refusal's audit reason: the error's stable code, and the field it names."""
        if self.names_field and exc.field:
            return f"{exc.reason} at {exc.field}"
        return str(exc.reason)


def _windows(limits: Sequence[LimitState]) -> list[str]:
    return [state.name for state in limits if not state.allowed] or ["client"]


def _scope(name: str) -> Callable[[Sequence[LimitState]], list[str]]:
    return lambda _limits: [name]


# --- the table ---------------------------------------------------------------------------

_RETRY_SOON = {"Retry-After": "5"}

ROWS: tuple[ErrorRule, ...] = (
    # Decided where raised: the error is the answer. The submission's refusals are typed
    # by how they are counted.
    ErrorRule((ApiError,), view=own_answer),
    ErrorRule((InvalidPayload,), view=own_answer, check="validation"),
    ErrorRule((RateLimited,), view=own_answer, action=_RATE_LIMIT_HIT, scopes=_windows),
    ErrorRule(
        (ClientQueueFull,), view=own_answer, action=_RATE_LIMIT_HIT, scopes=_scope("client_queue")
    ),
    ErrorRule((GlobalQueueFull,), view=own_answer, scopes=_scope("global_queue")),
    ErrorRule(
        (TokenError,),
        status=401,
        kind="unauthorized",
        title="Unauthorized",
        detail="missing, invalid, expired or revoked credentials",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        log_level=logging.INFO,
        log_line="token refused ({reason})",
    ),
    ErrorRule(
        (LeakDetectedError,),
        status=422,
        kind="leak-detected",
        title="Secret-looking value in a field not declared secret",
        view=leak_answer,
        names_field=True,
        check="leak_guard",
    ),
    ErrorRule(
        (InputRejectedError, UnsafeURLError),
        status=422,
        kind="invalid-payload",
        title="Invalid payload",
        view=rejected_answer,
        names_field=True,
        check="validation",
    ),
    ErrorRule(
        (RequestValidationError,),
        status=422,
        kind="invalid-request",
        title="Invalid request",
        detail="the request failed validation",
        view=request_invalid_answer,
    ),
    ErrorRule((StarletteHTTPException,), view=http_answer),
    ErrorRule(
        (redis.RedisError,),
        status=503,
        kind="unavailable",
        title="Service unavailable",
        detail="the gateway's storage is unreachable; nothing was accepted",
        headers=_RETRY_SOON,
        log_level=logging.WARNING,
        log_line="redis unavailable: {name}",
    ),
    ErrorRule(
        (AuditError, AuditChainBrokenError),
        status=503,
        kind="unavailable",
        title="Service unavailable",
        detail="the audit log is unreachable; nothing was accepted",
        headers=_RETRY_SOON,
        log_level=logging.ERROR,
        log_line="audit log unavailable ({reason})",
    ),
    # Seal, vault and key failures on the gateway side are server faults, never input.
    ErrorRule(
        (
            *(SealError, NotSealedError, SealExpiredError, SealBindingError),
            *(VaultError, KeyRingError, KeyRetiredError),
        ),
        log_level=logging.ERROR,
        log_line="{name} ({reason})",
    ),
    ErrorRule(
        (
            *(TaskgateError, StoredStateError, ConfigError),
            *(ClientError, OperatorError, HashBusyError),
        ),
        log_level=logging.WARNING,
        log_line="{name} ({reason})",
    ),
    ErrorRule(
        (Exception,), log_level=logging.ERROR, log_line="unhandled {name}", outside_middleware=True
    ),
)

ERRORS: dict[type[Exception], ErrorRule] = {error: rule for rule in ROWS for error in rule.errors}
_RESOLVED: dict[type[BaseException], ErrorRule] = {}


def rule_for(error: type[BaseException]) -> ErrorRule:
    """The row of ``error``, or of its nearest listed ancestor (as Starlette picks a handler)."""
    rule = _RESOLVED.get(error)
    if rule is None:
        rule = next((ERRORS[cls] for cls in error.__mro__ if cls in ERRORS), ERRORS[Exception])
        _RESOLVED[error] = rule
    return rule


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def respond(request: Request, exc: BaseException, rule: ErrorRule) -> JSONResponse:
    """``exc`` as problem+json by ``rule``, logged as its row says."""
    if rule.log_level is not None:
        line = rule.log_line.format(name=type(exc).__name__, reason=getattr(exc, "reason", ""))
        log.log(rule.log_level, "%s rid=%s", line, _rid(request))
    status, title, detail, kind, headers, extensions = rule.answer(request, exc)
    response = problem(
        status,
        title,
        detail,
        kind=kind,
        instance=request.url.path,
        headers=headers,
        request_id=_rid(request),
        **extensions,
    )
    if rule.outside_middleware:
        # Starlette answers unhandled errors outside every middleware: add what the
        # request-id and security-header middleware would have added.
        for name, value in (*SECURITY_HEADERS, (b"x-request-id", _rid(request).encode())):
            response.headers.setdefault(name.decode(), value.decode())
    return response


def _handler(rule: ErrorRule) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return respond(request, exc, rule)

    handle.__name__ = f"handle_{rule.errors[0].__name__}"
    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Register one handler per row of the table: every exception becomes problem+json."""
    for rule in ROWS:
        handler = _handler(rule)
        for error in rule.errors:
            app.add_exception_handler(error, handler)
