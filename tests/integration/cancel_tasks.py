"""Tasks for the cancellation tests (loaded via TASKGATE_TASK_MODULES by their own stack).

Not in ``sample_tasks``: these wait up to a minute for the test to release them, and the
session worker would be tied up by every one the schemathesis run submits.

Each run appends lines to ``$TASKGATE_TEST_SIDE_EFFECTS/<task id>``: ``before <pid>`` when
the body starts, ``after`` once released (the side effect proper), ``cleanup`` instead if
it is stopped. A run is released by the file ``release-<release>`` in the same folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from celery import current_task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from workers.contract.catalogue import task

MAX_WAIT = 60.0


class WaitPayload(BaseModel):
    """Which release file to wait for; a secret, so the task has vault entries."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    release: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    token: SecretStr | None = None


def _folder() -> Path:
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _line(text: str) -> None:
    with (_folder() / str(current_task.request.id)).open("a") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _wait_then_act(payload: WaitPayload) -> dict[str, object]:
    _line(f"before {os.getpid()}")
    release = _folder() / f"release-{payload.release}"
    deadline = time.monotonic() + MAX_WAIT
    try:
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        _line("cleanup")  # what a cancellable task may do when it is stopped
        raise
    _line("after")
    return {"released": release.exists()}


@task("test.cancellable_wait", schema=WaitPayload, secret_fields=("token",), cancellable=True)
def cancellable_wait(payload: WaitPayload) -> dict[str, object]:
    """Wait to be released, then act; declared cancellable: it may be stopped mid-run."""
    return _wait_then_act(payload)


@task("test.uncancellable_wait", schema=WaitPayload, secret_fields=("token",))
def uncancellable_wait(payload: WaitPayload) -> dict[str, object]:
    """The same, not declared cancellable: a DELETE while it runs must leave it running."""
    return _wait_then_act(payload)
