"""Tasks the session worker loads (TASKGATE_TASK_MODULES) so tests can watch side effects.

Each run appends one line to ``$TASKGATE_TEST_SIDE_EFFECTS/<task id>``: a test proves a
task body never ran by that file's absence.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from celery import current_task
from pydantic import BaseModel, ConfigDict, SecretStr

from workers.contract.catalogue import RetryPolicy, task


class TouchPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: str
    token: SecretStr | None = None


def _mark(note: str) -> None:
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / str(current_task.request.id)).open("a") as fh:
        fh.write(f"ran {len(note)}\n")


@task("test.touch", schema=TouchPayload, secret_fields=("token",))
def touch(payload: TouchPayload) -> dict[str, object]:
    """Record that the body ran; prove the secret arrived without returning it."""
    _mark(payload.note)
    token = payload.token.get_secret_value() if payload.token else ""
    return {
        "note_length": len(payload.note),
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "token_repr": repr(payload.token),
    }


@task("test.other", schema=TouchPayload)
def other(payload: TouchPayload) -> dict[str, object]:
    """A second task, so a message can be moved from one task name to another."""
    _mark(payload.note)
    return {"note_length": len(payload.note)}


@task("test.parked", schema=TouchPayload, queue="taskgate-parked")
def parked(payload: TouchPayload) -> dict[str, object]:
    """Routed to a queue no session worker consumes: its tasks stay queued."""
    _mark(payload.note)
    return {"note_length": len(payload.note)}


@task(
    "test.retry_quoting_input",
    schema=TouchPayload,
    retry=RetryPolicy(max_attempts=2, backoff_base=0.1, backoff_max=0.2),
)
def retry_quoting_input(payload: TouchPayload) -> dict[str, object]:
    """Fail the first run with an error whose message quotes the input (as a TLS error names
    the host it could not verify), then succeed."""
    if not current_task.request.retries:
        raise ConnectionError(f"could not reach {payload.note}")
    _mark(payload.note)
    return {"note_length": len(payload.note)}


@task("test.fail_quoting_input", schema=TouchPayload)
def fail_quoting_input(payload: TouchPayload) -> dict[str, object]:
    """Fail with an error (not retried: dead-lettered at once) whose message quotes the input."""
    raise ValueError(f"cannot handle {payload.note}")


class NotePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    marker: str
    secret: SecretStr | None = None


@task("test.best_effort", schema=NotePayload, secret_fields=("secret",), best_effort=True)
def best_effort(payload: NotePayload) -> None:
    """Runs in the gateway after the reply: leaves a file named by the marker."""
    folder = Path(os.environ["TASKGATE_TEST_SIDE_EFFECTS"])
    folder.mkdir(parents=True, exist_ok=True)
    secret = payload.secret.get_secret_value() if payload.secret else ""
    target = folder / f"best-effort-{payload.marker}"
    partial = target.with_name(f".{target.name}.tmp")
    partial.write_text(hashlib.sha256(secret.encode()).hexdigest())
    partial.replace(target)  # whole or absent: the test polls for the file, then reads it
