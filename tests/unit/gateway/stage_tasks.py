"""The catalogue the stage tests' gateway serves: a task with a secret field, one without,
one with a tight rate limit and one on the best-effort lane, on a queue no worker takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from workers.contract.catalogue import Catalogue, TaskSpec


class NotePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    note: str
    token: SecretStr | None = None


# A queue of their own (within the gateway role's ``taskgate*`` keys): when a session's
# Celery worker is up (integration tests ran first), it never takes these messages.
STAGE_QUEUE = "taskgate-stage-tests"


def _never_run(payload: NotePayload) -> dict[str, object]:  # pragma: no cover - no worker
    return {"note_length": len(payload.note)}


CATALOGUE = Catalogue(
    [
        TaskSpec(
            "stage.touch", NotePayload, _never_run, secret_fields=("token",), queue=STAGE_QUEUE
        ),
        TaskSpec("stage.other", NotePayload, _never_run, queue=STAGE_QUEUE),
        TaskSpec("stage.tight", NotePayload, _never_run, rate_limit="2/minute", queue=STAGE_QUEUE),
        TaskSpec("stage.small", NotePayload, _never_run, max_payload_bytes=64, queue=STAGE_QUEUE),
        TaskSpec("stage.best", NotePayload, _never_run, best_effort=True),
    ]
)
