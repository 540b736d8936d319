"""The task view's `error`: one object shape, shown only while it describes the task's state."""

from __future__ import annotations

import pytest

from gateway.routes.tasks import task_view
from gateway.schemas import TaskView

TASK_ID = "2f1c7f7e-8a52-4c55-9a43-2c1a1d1e0a11"


def _record(state: str, error: str = "", attempts: str = "1") -> dict[str, str]:
    return {"name": "t.a", "state": state, "attempts": attempts, "error": error,
            "submitted_at": "1.5"}  # fmt: skip


def test_a_retried_attempts_error_is_an_object_scoped_to_that_attempt() -> None:
    """`retried`: type (before ';'), the worker's redacted text, the attempt number."""
    view = task_view(TASK_ID, _record("retried", "ConnectionError; retry in 0.2s", "2"))
    assert view["error"] == {
        "type": "ConnectionError",
        "detail": "ConnectionError; retry in 0.2s",
        "attempt": 2,
    }
    TaskView.model_validate(view)  # the documented schema


@pytest.mark.parametrize("state", ["queued", "started", "succeeded", "cancelling", "revoked"])
def test_an_earlier_attempts_error_is_not_shown_once_the_task_moved_on(state: str) -> None:
    """A later run, a success or a cancel leaves the record's old error out of the view."""
    view = task_view(TASK_ID, _record(state, "ConnectionError; retry in 0.2s", "2"))
    assert "error" not in view
    TaskView.model_validate(view)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("invalid_payload", "invalid_payload"), ("TimeLimitExceeded", "TimeLimitExceeded"),
     ("bad input (input refused)", "bad input"), ("not_enqueued", "not_enqueued")],
)  # fmt: skip
def test_a_final_failures_error_names_its_kind(text: str, kind: str) -> None:
    """`failed` and `dead_lettered` show the error with its kind."""
    for state in ("failed", "dead_lettered"):
        view = task_view(TASK_ID, _record(state, text))
        assert view["error"]["type"] == kind
        assert view["error"]["attempt"] == 1
