"""The ``cancellable`` declaration: off by default, refused where it cannot hold."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from workers.contract.catalogue import TaskSpec


class _Empty(BaseModel):
    pass


def test_tasks_are_not_cancellable_unless_declared() -> None:
    """A running task is never interrupted unless its declaration says so."""
    assert TaskSpec(name="t.plain", schema=_Empty, fn=print).cancellable is False
    assert TaskSpec(name="t.stop", schema=_Empty, fn=print, cancellable=True).cancellable


def test_best_effort_task_cannot_be_cancellable() -> None:
    """A best-effort task runs in the gateway, where nothing can stop it: refused."""
    with pytest.raises(ValueError, match="cannot be cancellable"):
        TaskSpec(name="t.both", schema=_Empty, fn=print, best_effort=True, cancellable=True)
