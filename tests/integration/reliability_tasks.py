"""Tasks for the reliability and dead-letter tests (loaded via TASKGATE_TASK_MODULES).

Every task leaves its traces under ``$TASKGATE_TEST_SIDE_EFFECTS``, in files named by the
task id, so a test can count what ran:

* ``<id>.starts``  one line per run that began: ``<pid> <attempt> <start time> <eta|->``
* ``<id>``         the side effect proper: one line per run that got that far

The per-client and per-task rate limits are raised: the burst test submits hundreds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

from celery import current_task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from workers.contract.catalogue import RetryPolicy, task

BURST_RATE = "100000/minute"
# Attempt n waits a delay drawn from [b_n/2, b_n] with b_n = base * 2**(n-1): 1, 2, 4 s.
ALWAYS_FAILS_POLICY = RetryPolicy(
    max_attempts=4, backoff_base=1.0, backoff_max=8.0, jitter=True, retry_on=(ConnectionError,)
)
FAILS_FAST_POLICY = RetryPolicy(
    max_attempts=2, backoff_base=0.2, backoff_max=0.2, jitter=True, retry_on=(ConnectionError,)
)
FLAKY_FAILURES = 2


class Slow(BaseModel):
    """How long to sleep before the side effect."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    seconds: Annotated[float, Field(ge=0, le=30)] = 0
    note: Annotated[str, Field(max_length=100)] = ""


class Note(BaseModel):
    """A note and an optional secret (stored in the vault while the task lives)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: Annotated[str, Field(max_length=100)] = ""
    token: SecretStr | None = None


def _folder() -> Path:
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _task_id() -> str:
    return str(current_task.request.id)


def _started() -> None:
    """Record that a run began: pid (to kill the pool child), attempt, time, ETA if any."""
    request = current_task.request
    eta = request.eta
    stamp = f"{os.getpid()} {int(request.retries or 0) + 1} {time.time():.6f} {eta or '-'}\n"
    with (_folder() / f"{_task_id()}.starts").open("a") as fh:
        fh.write(stamp)


def _effect(line: str) -> None:
    with (_folder() / _task_id()).open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@task("test.slow_effect", schema=Slow, rate_limit=BURST_RATE)
def slow_effect(payload: Slow) -> dict[str, object]:
    """Sleep, then perform the side effect once: one line in the task's file."""
    _started()
    time.sleep(payload.seconds)
    _effect(f"effect {os.getpid()}")
    return {"slept": payload.seconds}


@task("test.quick", schema=Note, secret_fields=("token",), rate_limit=BURST_RATE)
def quick(payload: Note) -> dict[str, object]:
    """Perform the side effect at once (the burst test submits hundreds of these)."""
    _effect("effect")
    return {"note_length": len(payload.note)}


@task(
    "test.always_fails",
    schema=Note,
    secret_fields=("token",),
    rate_limit=BURST_RATE,
    retry=ALWAYS_FAILS_POLICY,
)
def always_fails(payload: Note) -> dict[str, object]:
    """Record the attempt, then fail with a retryable error, every time."""
    _started()
    _effect(f"failed {time.time():.6f}")
    raise ConnectionError("the test upstream is always down")


@task(
    "test.fails_fast",
    schema=Note,
    secret_fields=("token",),
    rate_limit=BURST_RATE,
    retry=FAILS_FAST_POLICY,
)
def fails_fast(payload: Note) -> dict[str, object]:
    """Fail with a retryable error every time, with short delays (dead-letter admin tests)."""
    _started()
    _effect(f"failed {time.time():.6f}")
    raise ConnectionError("the test upstream is always down")


@task(
    "test.flaky",
    schema=Note,
    rate_limit=BURST_RATE,
    retry=RetryPolicy(
        max_attempts=FLAKY_FAILURES + 2, backoff_base=0.2, backoff_max=0.4, retry_on=(TimeoutError,)
    ),
)
def flaky(payload: Note) -> dict[str, object]:
    """Fail with a retryable error on the first runs, then succeed."""
    _started()
    attempt = int(current_task.request.retries or 0) + 1
    if attempt <= FLAKY_FAILURES:
        raise TimeoutError("the test upstream is slow today")
    _effect(f"effect on attempt {attempt}")
    return {"attempt": attempt}


@task("test.hangs", schema=Slow, rate_limit=BURST_RATE, soft_time_limit=1, time_limit=2)
def hangs(payload: Slow) -> dict[str, object]:
    """Outlive the hard time limit: the soft limit's exception is swallowed, as careless
    code might."""
    _started()
    try:
        time.sleep(payload.seconds)
    except SoftTimeLimitExceeded:
        time.sleep(payload.seconds)
    _effect("effect after the time limit")
    return {"slept": payload.seconds}


@task("test.crashes", schema=Note, secret_fields=("token",), rate_limit=BURST_RATE)
def crashes(payload: Note) -> dict[str, object]:
    """Kill its own pool process, every time (as a segfault in a native library would)."""
    _started()
    os.kill(os.getpid(), signal.SIGKILL)
    _effect("effect after the crash")  # pragma: no cover - never reached
    return {"note_length": len(payload.note)}  # pragma: no cover - never reached


@task("test.long", schema=Slow, rate_limit=BURST_RATE, soft_time_limit=58, time_limit=60)
def long(payload: Slow) -> dict[str, object]:
    """Like ``test.slow_effect``, with its own time limits well above the worker's default
    (and so above the visibility timeout the test stack derives from that default)."""
    _started()
    time.sleep(payload.seconds)
    _effect(f"effect {os.getpid()}")
    return {"slept": payload.seconds}
