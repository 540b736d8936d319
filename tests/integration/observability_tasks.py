"""Tasks for the observability tests (loaded via TASKGATE_TASK_MODULES): each path a task
can take, with the payload and the secret quoted where a careless log would show them -
in the return value and in exception messages."""

from __future__ import annotations

import time
from typing import Annotated

from celery import current_task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from security.errors import InputRejectedError
from workers.contract.catalogue import RetryPolicy, task

RATE = "100000/minute"
RETRY_ONCE = RetryPolicy(max_attempts=2, backoff_base=0.2, backoff_max=0.4)
RETRY_TWICE = RetryPolicy(max_attempts=2, backoff_base=0.2, backoff_max=0.4)


class Canary(BaseModel):
    """A note (the payload canary) and a secret (the secret canary)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: Annotated[str, Field(max_length=200)] = ""
    token: SecretStr | None = None


def _quoted(payload: Canary) -> str:
    secret = payload.token.get_secret_value() if payload.token else ""
    return f"note={payload.note} token={secret}"


@task("obs.echo", schema=Canary, secret_fields=("token",), rate_limit=RATE)
def echo(payload: Canary) -> dict[str, object]:
    """Succeed, returning both canaries (the result is sealed; no log may show it)."""
    return {"echo": _quoted(payload)}


@task("obs.fails", schema=Canary, secret_fields=("token",), rate_limit=RATE)
def fails(payload: Canary) -> dict[str, object]:
    """Fail (not retried: dead-lettered at once) with a message quoting both canaries."""
    raise ValueError(f"cannot handle {_quoted(payload)}")


@task("obs.rejects", schema=Canary, secret_fields=("token",), rate_limit=RATE)
def rejects(payload: Canary) -> dict[str, object]:
    """Refuse its own input (failed for good, not dead-lettered), quoting both canaries."""
    raise InputRejectedError(f"refusing {_quoted(payload)}", reason="input_refused")


@task("obs.flaky", schema=Canary, secret_fields=("token",), rate_limit=RATE, retry=RETRY_ONCE)
def flaky(payload: Canary) -> dict[str, object]:
    """Fail the first run with a retryable error quoting both canaries, then succeed."""
    if not current_task.request.retries:
        raise ConnectionError(f"could not reach {_quoted(payload)}")
    return {"echo": _quoted(payload)}


@task(
    "obs.always_retries",
    schema=Canary,
    secret_fields=("token",),
    rate_limit=RATE,
    retry=RETRY_TWICE,
)
def always_retries(payload: Canary) -> dict[str, object]:
    """Fail every run with a retryable error quoting both canaries: retried, then
    dead-lettered."""
    raise ConnectionError(f"could not reach {_quoted(payload)}")


@task(
    "obs.hangs",
    schema=Canary,
    secret_fields=("token",),
    rate_limit=RATE,
    soft_time_limit=1,
    time_limit=2,
)
def hangs(payload: Canary) -> dict[str, object]:
    """Outlive the hard time limit (the soft limit's exception swallowed): the worker's main
    process dead-letters it."""
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        time.sleep(10)
    return {"echo": _quoted(payload)}  # pragma: no cover - killed before


class Exploding(BaseModel):
    """A schema whose validator fails with an unexpected error quoting its input: the
    gateway answers 500 and reports it (the error is not a validation error)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: Annotated[str, Field(max_length=200)] = ""
    token: SecretStr | None = None

    @field_validator("note")
    @classmethod
    def _explode(cls, value: str) -> str:
        raise RuntimeError(f"validator blew up on {value}")


@task("obs.explodes", schema=Exploding, secret_fields=("token",), rate_limit=RATE)
def explodes(payload: Exploding) -> dict[str, object]:  # pragma: no cover - never admitted
    """Never runs: the gateway fails validating its payload."""
    return {"note": payload.note}
