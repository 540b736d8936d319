"""SIGUSR1 in a pool process: it stops a cancellable task's body, never its bookkeeping.

This process is set up as billiard sets up a prefork pool process (its soft-time-limit
handler on SIGUSR1); ``signal.raise_signal`` runs the Python handler before it returns.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from billiard.pool import soft_timeout_sighandler
from celery.exceptions import SoftTimeLimitExceeded

from workers.execution import cancel


@pytest.fixture
def pool_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """billiard's handler on SIGUSR1 and a fresh per-process state; restored afterwards."""
    monkeypatch.setattr(cancel, "_state", cancel._PoolSignals())
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("pool_process")
def test_signal_during_a_cancellable_tasks_start_is_held_then_stops_its_body() -> None:
    """Arriving before the body runs (start gate), it raises as soon as the body starts."""
    cancel.task_starts(cancellable=True)
    signal.raise_signal(signal.SIGUSR1)  # held: no exception here
    body_ran = False
    with pytest.raises(SoftTimeLimitExceeded), cancel.interruptible():
        body_ran = True
    assert not body_ran


@pytest.mark.usefixtures("pool_process")
def test_signal_inside_a_cancellable_tasks_body_raises_there() -> None:
    """In the body it raises SoftTimeLimitExceeded, which the task may catch to clean up."""
    cancel.task_starts(cancellable=True)
    with pytest.raises(SoftTimeLimitExceeded), cancel.interruptible():
        signal.raise_signal(signal.SIGUSR1)
    signal.raise_signal(signal.SIGUSR1)  # after the body (final bookkeeping): held again
    cancel.task_ends()


@pytest.mark.usefixtures("pool_process")
def test_signal_left_over_from_an_earlier_task_never_reaches_the_next_one() -> None:
    """A signal that lands after a task ended is dropped when the next task starts."""
    cancel.task_starts(cancellable=True)
    cancel.task_ends()
    signal.raise_signal(signal.SIGUSR1)  # between tasks: held
    cancel.task_starts(cancellable=True)
    with cancel.interruptible():
        pass


@pytest.mark.usefixtures("pool_process")
def test_tasks_not_cancellable_keep_billiards_soft_time_limit() -> None:
    """For any other task SIGUSR1 raises SoftTimeLimitExceeded anywhere, as billiard does."""
    cancel.task_starts(cancellable=False)
    with pytest.raises(SoftTimeLimitExceeded):
        signal.raise_signal(signal.SIGUSR1)
    cancel.task_ends()


@pytest.mark.usefixtures("pool_process")
def test_outside_a_pool_process_the_handler_is_left_alone() -> None:
    """Without billiard's handler in place (not a prefork pool process) nothing is installed."""
    seen: list[int] = []

    def other(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    signal.signal(signal.SIGUSR1, other)
    cancel.task_starts(cancellable=True)
    assert signal.getsignal(signal.SIGUSR1) is other
    signal.raise_signal(signal.SIGUSR1)
    assert seen == [signal.SIGUSR1]
