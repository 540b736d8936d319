"""Tasks for the metrics tests (loaded via TASKGATE_TASK_MODULES): one of each outcome.

Every exception message quotes the task's input, so a test can check that no message
reaches a metric. ``mt.flaky`` fails its first run (a file under
``$TASKGATE_TEST_SIDE_EFFECTS`` named by the task id says it ran once).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from celery import current_task
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from security.errors import InputRejectedError
from workers.contract.catalogue import RetryPolicy, task

RATE = "100000/minute"
NEVER_RETRIED = RetryPolicy(max_attempts=1, retry_on=(ConnectionError,))
RETRIED_ONCE = RetryPolicy(
    max_attempts=2, backoff_base=0.2, backoff_max=0.2, jitter=False, retry_on=(ConnectionError,)
)


class Note(BaseModel):
    """A note and an optional secret (stored in the vault while the task lives)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: Annotated[str, Field(max_length=200)] = ""
    token: SecretStr | None = None


@task("mt.ok", schema=Note, secret_fields=("token",), rate_limit=RATE)
def ok(payload: Note) -> dict[str, object]:
    """Succeed, returning the note (a result the metrics must never show)."""
    return {"echo": payload.note}


@task("mt.boom", schema=Note, secret_fields=("token",), rate_limit=RATE, retry=NEVER_RETRIED)
def boom(payload: Note) -> dict[str, object]:
    """Fail for good: dead-lettered."""
    raise ValueError(f"boom on {payload.note}")


@task("mt.flaky", schema=Note, secret_fields=("token",), rate_limit=RATE, retry=RETRIED_ONCE)
def flaky(payload: Note) -> dict[str, object]:
    """Fail the first run with a retryable error, then succeed."""
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{current_task.request.id}.flaky"
    if not marker.exists():
        marker.write_text("1")
        raise ConnectionError(f"upstream down for {payload.note}")
    return {"echo": payload.note}


@task("mt.refuses", schema=Note, secret_fields=("token",), rate_limit=RATE)
def refuses(payload: Note) -> dict[str, object]:
    """Refuse its own input: failed, not retried or dead-lettered."""
    raise InputRejectedError(f"cannot use {payload.note}", field="note")


@task("mt.waits", schema=Note, secret_fields=("token",), rate_limit=RATE, cancellable=True)
def waits(payload: Note) -> dict[str, object]:
    """Wait (up to 30 s) until cancelled: ends revoked."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {"echo": payload.note}
