"""A task whose payload check can be held, for the idempotency-lease tests (loaded via
TASKGATE_TASK_MODULES beside ``reliability_tasks``).

``test.held_check`` takes ``{"hold": "<name>"}``; its schema's validator - which the gateway
runs between a submission's idempotency reservation and its commit - waits while the file
``$TASKGATE_TEST_SIDE_EFFECTS/hold-<name>`` exists (at most a minute). A test freezes a
request right there, deterministically, then kills the gateway or takes its key. The body
leaves one line per run in ``$TASKGATE_TEST_SIDE_EFFECTS/<task id>``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

from celery import current_task
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from workers.contract.catalogue import task

HOLD_LIMIT = 60.0


def _folder() -> Path:
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def hold_file(folder: Path, name: str) -> Path:
    """The file whose presence holds the check of a request with ``{"hold": name}``."""
    return folder / f"hold-{name}"


class Held(BaseModel):
    """Which hold file the check waits on; a note and a secret for canaries."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    hold: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    note: Annotated[str, Field(max_length=100)] = ""
    token: SecretStr | None = None

    @field_validator("hold")
    @classmethod
    def _wait_while_held(cls, value: str) -> str:
        path = hold_file(_folder(), value)
        deadline = time.monotonic() + HOLD_LIMIT
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return value


@task("test.held_check", schema=Held, secret_fields=("token",), rate_limit="100000/minute")
def held_check(payload: Held) -> dict[str, object]:
    """One line per run in the task's side-effect file."""
    with (_folder() / str(current_task.request.id)).open("a") as fh:
        fh.write("effect\n")
    return {"hold": payload.hold}
