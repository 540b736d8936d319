"""The error table: one row per error type, handlers made from it, no secret in an answer."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

import gateway
import security
from gateway.http.errors import ERRORS, ROWS, ApiError, ErrorRule, install_error_handlers, rule_for
from gateway.http.problems import (
    PROBLEM_TYPE_BASE,
    ClientQueueFull,
    GlobalQueueFull,
    InvalidPayload,
    RateLimited,
    http_answer,
    own_answer,
)
from gateway.submission.ratelimit import LimitState
from security import leakguard
from security.errors import (
    AuditChainBrokenError,
    ConfigError,
    InputRejectedError,
    LeakDetectedError,
    StoredStateError,
    TaskgateError,
    TokenError,
    UnsafeURLError,
)

REPO = Path(__file__).resolve().parents[3]
CANARY = "canary-5ecret-9f3a71"
LIMITS = [LimitState("client", 10, 0, 60, False), LimitState("task", 10, 3, 60, True)]


def _domain_errors() -> set[type[TaskgateError]]:
    """Every TaskgateError subclass defined in security/ or gateway/ (all modules loaded)."""
    for package in (security, gateway):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    found: set[type[TaskgateError]] = set()
    todo: list[type[TaskgateError]] = [TaskgateError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return {cls for cls in found if cls.__module__.split(".")[0] in ("security", "gateway")}


def test_every_domain_error_the_gateway_can_meet_has_exactly_one_row() -> None:
    """A TaskgateError subclass is listed in one row: none falls to a parent's by accident."""
    errors = _domain_errors()
    assert {TokenError, StoredStateError, ConfigError} <= errors
    for cls in errors:
        rows = [rule for rule in ROWS if cls in rule.errors]
        assert len(rows) == 1, cls.__name__


def test_no_error_type_is_listed_twice() -> None:
    """Each type appears once in the whole table, so its row is never ambiguous."""
    listed = [cls for rule in ROWS for cls in rule.errors]
    assert len(listed) == len(set(listed)) == len(ERRORS)


def test_the_handlers_are_the_tables_rows() -> None:
    """install_error_handlers registers every listed type, one handler per row."""
    app = FastAPI()
    install_error_handlers(app)
    for rule in ROWS:
        handlers = {app.exception_handlers[cls] for cls in rule.errors}
        assert len(handlers) == 1, rule.errors


def test_an_unlisted_error_takes_its_nearest_listed_ancestors_row() -> None:
    """As Starlette picks a handler: by the exception's MRO."""

    class Unlisted(InputRejectedError):
        pass

    assert rule_for(Unlisted) is ERRORS[InputRejectedError]
    assert rule_for(KeyError) is ERRORS[Exception]


def test_a_refusals_audit_reason_is_its_code_and_field() -> None:
    """Domain errors by reason (plus the field they name), API errors by kind."""
    rejected = InputRejectedError("no", field="items.2", reason="too_deep")
    assert rule_for(InputRejectedError).audit_reason(rejected) == "too_deep at items.2"
    assert rule_for(InputRejectedError).audit_reason(InputRejectedError("no")) == "invalid_input"
    token = TokenError("revoked", reason="revoked")
    assert rule_for(TokenError).audit_reason(token) == "revoked"
    full = GlobalQueueFull()
    assert rule_for(GlobalQueueFull).audit_reason(full) == "backpressure"
    assert rule_for(RateLimited).action == rule_for(ClientQueueFull).action == "rate_limit.hit"
    assert rule_for(GlobalQueueFull).action == "task.submit"


def _instances() -> list[BaseException]:
    """One error of every listed type, each carrying the canary where a lower layer could
    have put a secret value: its message, its cause, the value a validator refused."""
    made: dict[type[BaseException], Callable[[], BaseException]] = {
        ApiError: lambda: ApiError(403, "Forbidden", "the token lacks the scope", kind="forbidden"),
        InvalidPayload: lambda: InvalidPayload("the payload does not match the task's schema"),
        RateLimited: lambda: RateLimited(LIMITS),
        ClientQueueFull: lambda: ClientQueueFull(7, 7),
        GlobalQueueFull: GlobalQueueFull,
        LeakDetectedError: _leak,
        InputRejectedError: lambda: InputRejectedError(
            f"value {CANARY!r} refused", field="to", reason="bad_address"
        ),
        UnsafeURLError: lambda: UnsafeURLError(
            f"https://{CANARY}@10.0.0.1/ refused", field="url", reason="unsafe_url"
        ),
        RequestValidationError: lambda: RequestValidationError(
            [{"type": "string_too_long", "loc": ("body", "name"), "msg": CANARY, "input": CANARY}]
        ),
        HTTPException: lambda: HTTPException(404),
        redis.RedisError: lambda: redis.AuthenticationError(f"invalid password {CANARY}"),
        ConfigError: lambda: ConfigError("TASKGATE_X", f"{CANARY} is unsafe", "set it"),
        StoredStateError: lambda: StoredStateError(CANARY, record="client"),
        AuditChainBrokenError: lambda: AuditChainBrokenError(
            CANARY, index=3, record_id="r", reason="chain_broken"
        ),
        Exception: lambda: RuntimeError(f"crashed holding {CANARY}"),
    }
    out = []
    for cls in ERRORS:
        exc = made[cls]() if cls in made else cls(f"refused {CANARY}")
        exc.__cause__ = RuntimeError(CANARY)
        out.append(exc)
    return out


def _leak() -> LeakDetectedError:
    with pytest.raises(LeakDetectedError) as caught:
        leakguard.check({"note": f"Bearer eyJhbGciOi.{CANARY}.sig"})
    return caught.value


def _answers(errors: list[BaseException]) -> list[httpx.Response]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/tasks/{index}")
    async def fail(index: int) -> None:
        raise errors[index]

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            return [await client.post(f"/v1/tasks/{i}") for i in range(len(errors))]

    return asyncio.run(go())


def test_no_answer_built_from_the_table_echoes_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Every row's problem+json (body and headers) and its server-log line leave out a
    secret carried by the error, whatever the row."""
    errors = _instances()
    with caplog.at_level(logging.DEBUG, logger="taskgate.gateway"):
        answers = _answers(errors)
    for exc, answer in zip(errors, answers, strict=True):
        assert answer.headers["content-type"] == "application/problem+json", type(exc)
        body = answer.json()
        assert body["type"].startswith(PROBLEM_TYPE_BASE)
        assert body["status"] == answer.status_code >= 400
        assert CANARY not in answer.text, type(exc).__name__
        assert CANARY not in str(answer.headers), type(exc).__name__
    assert CANARY not in caplog.text


def test_fixed_rows_answer_with_their_own_status_type_and_title() -> None:
    """A row without a view answers exactly as it reads."""
    fixed = [rule for rule in ROWS if rule.view is None]
    answers = _answers([RuntimeError("x") if Exception in r.errors else _first(r) for r in fixed])
    for rule, answer in zip(fixed, answers, strict=True):
        body = answer.json()
        assert (answer.status_code, body["title"], body["detail"]) == (
            rule.status,
            rule.title,
            rule.detail,
        )
        assert body["type"] == PROBLEM_TYPE_BASE + rule.kind
        for name, value in (rule.headers or {}).items():
            assert answer.headers[name] == value


def _first(rule: ErrorRule) -> BaseException:
    cls = rule.errors[0]
    return redis.ConnectionError("down") if cls is redis.RedisError else cls("x")


def test_the_http_api_document_lists_every_row() -> None:
    """docs/http-api.md's table of error types agrees with the table: each listed type with
    its row's status and problem type, or "its own" where the error decides them."""
    text = (REPO / "docs" / "http-api.md").read_text()
    documented = {}
    for line in text.splitlines():
        match = re.match(r"\| ((?:`[\w.]+`(?:, )?)+) \| ([^|]+) \| ([^|]+) \|", line)
        if match:
            for name in re.findall(r"`([\w.]+)`", match.group(1)):
                documented[name] = (match.group(2).strip(), match.group(3).strip())
    for cls, rule in ERRORS.items():
        name = "redis.RedisError" if cls is redis.RedisError else cls.__name__
        status, kind = documented[name]
        if rule.view in (own_answer, http_answer):
            assert (status, kind) == ("its own", "its own"), name
        else:
            assert status.startswith(str(rule.status)), name
            assert kind.startswith(f"`{rule.kind}`"), name
