"""A sealed task's return value never leaves its pool process as text: Celery's tracer
sends the main process a repr of every result (for its log line and events); a
taskgate task's is empty of the result."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.trace import build_tracer

from workers.execution.task import SealedTask

CANARY = "result-canary-7f3a"


class _Returns(SealedTask):
    """A SealedTask whose call returns at once (the sealed path itself is not under test)."""

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        return {"report": CANARY * 100, "rows": list(range(50))}


def _returns() -> None:  # pragma: no cover - _Returns.__call__ answers instead
    return None


def test_the_tracer_sends_no_repr_of_a_sealed_result() -> None:
    app = Celery("result-repr", set_as_current=False)
    task = app.task(name="t.returns", base=_Returns, shared=False, ignore_result=True)(_returns)
    tracer = build_tracer(task.name, task, app=app)
    result, info, _runtime, text = tracer("id-1", [], {}, {"id": "id-1"})
    assert info is None  # it succeeded
    assert text is not None
    assert result["report"].startswith(CANARY)  # the task did return the result ...
    assert CANARY not in text  # ... and what goes to the main process does not show it
    assert len(text) < 10
