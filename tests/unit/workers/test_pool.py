"""The worker's prefork pool keeps a half-transferred pipe message across a hub reset.

Real pool processes and a real kombu hub, driven the way Celery's consumer drives them:
when the broker connection breaks, ``hub.reset()``, then, reconnected,
``pool.register_with_event_loop(hub)`` (``celery/worker/loops.py``). The reset is made
at the moment the hub holds a generator for a pipe - a message part-way through.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from celery.concurrency import asynpool
from kombu.asynchronous import Hub, set_event_loop

from workers.celery_ext.pool import ResumingAsynPool

BIG = 4_000_000  # far more than a pipe holds (64 KiB): always read and written in parts


def _make_bytes(size: int) -> bytes:
    return b"r" * size


def _measure(blob: bytes) -> int:
    return len(blob)


class _Driven:
    """A one-process pool registered with its own hub, as a worker's consumer has them."""

    def __init__(self, pool_class: type[asynpool.AsynPool]) -> None:
        self.hub = Hub()
        set_event_loop(self.hub)
        self.pool = pool_class(processes=1, threads=False, enable_timeouts=True, synack=False)
        self.pool.register_with_event_loop(self.hub)
        self.outcomes: list[Any] = []
        self.resets = 0
        self.errors: list[Exception] = []  # raised by the loop (a garbled message)

    def submit(self, func: Callable[..., Any], arg: Any) -> None:
        self.pool.apply_async(
            func, (arg,), callback=self.outcomes.append, error_callback=self.outcomes.append
        )

    def run(
        self,
        *,
        reset_when: Callable[[Hub], bool] | None,
        timeout: float,
        after_reset: float | None = None,
    ) -> None:
        """Run the loop until an outcome arrives; reset once when ``reset_when`` holds, then
        wait at most ``after_reset`` seconds more."""
        loop = self.hub.create_loop()
        deadline = time.monotonic() + timeout
        while not self.outcomes and time.monotonic() < deadline:
            try:
                next(loop)
            except Exception as exc:  # noqa: BLE001 - recorded: the test asserts on it
                self.errors.append(exc)
                return
            if reset_when is not None and not self.resets and reset_when(self.hub):
                self.hub.reset()  # the broker connection broke...
                self.pool.register_with_event_loop(self.hub)  # ...and came back
                self.resets += 1
                loop = self.hub.create_loop()
                if after_reset is not None:
                    deadline = min(deadline, time.monotonic() + after_reset)

    def cut(
        self,
        func: Callable[..., Any],
        arg: Any,
        in_parts: Callable[[Hub], bool],
        *,
        after_reset: float = 30,
    ) -> None:
        """Submit until a transfer is caught part-way and the hub reset under it (one that
        went through in a single step left nothing to cut: it is submitted again), then run
        for at most ``after_reset`` seconds more."""
        deadline = time.monotonic() + 60
        while not self.resets and not self.errors and time.monotonic() < deadline:
            self.outcomes.clear()
            self.submit(func, arg)
            self.run(
                reset_when=in_parts, timeout=deadline - time.monotonic(), after_reset=after_reset
            )

    def close(self) -> None:
        # a child may be blocked on the pipe: no grace (billiard's private process list,
        # not in celery-types' stubs)
        for process in self.pool._pool:  # type: ignore[attr-defined]
            os.kill(process.pid, signal.SIGKILL)
        self.pool.terminate()
        self.hub.close()
        set_event_loop(None)


def _in_parts(table: Mapping[int, object]) -> bool:
    """Whether a hub's reader or writer table (fd -> (callback, args); kombu's stubs say
    callback alone) holds a generator: a transfer part-way through."""
    for entry in table.values():
        if not isinstance(entry, tuple):
            raise TypeError(f"a hub entry that is not (callback, args): {entry!r}")
        callback, _args = entry
        if inspect.isgenerator(callback):
            return True
    return False


def _reading_in_parts(hub: Hub) -> bool:
    return _in_parts(hub.readers)


def _writing_in_parts(hub: Hub) -> bool:
    return _in_parts(hub.writers)


@pytest.fixture
def driven() -> Iterator[Callable[[type[asynpool.AsynPool]], _Driven]]:
    made: list[_Driven] = []

    def make(pool_class: type[asynpool.AsynPool]) -> _Driven:
        made.append(_Driven(pool_class))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_result_half_read_when_the_hub_is_reset_still_arrives_whole(
    driven: Callable[[type[asynpool.AsynPool]], _Driven], caplog: pytest.LogCaptureFixture
) -> None:
    """The reset lands while the main process is part-way through reading a result; the
    worker log says what was resumed."""
    pool = driven(ResumingAsynPool)
    with caplog.at_level(logging.INFO, logger="taskgate.worker"):
        pool.cut(_make_bytes, BIG, _reading_in_parts)
    assert "pool: resumed 1 result(s) and 0 job(s) cut by a reconnect" in caplog.messages
    assert pool.resets == 1
    assert pool.outcomes == [b"r" * BIG]
    assert pool.errors == []
    handler = pool.pool._result_handler  # type: ignore[attr-defined]  # private, not in stubs
    assert handler.partial_reads == {}


def test_a_job_half_written_when_the_hub_is_reset_still_runs(
    driven: Callable[[type[asynpool.AsynPool]], _Driven],
) -> None:
    """The reset lands while the main process is part-way through writing a job."""
    pool = driven(ResumingAsynPool)
    pool.cut(_measure, b"w" * BIG, _writing_in_parts)
    assert pool.resets == 1
    assert pool.outcomes == [BIG]
    assert pool.errors == []


def test_the_pool_goes_on_working_after_a_reset_in_mid_transfer(
    driven: Callable[[type[asynpool.AsynPool]], _Driven],
) -> None:
    """Nothing is left marked busy or part-way: the next job runs as usual."""
    pool = driven(ResumingAsynPool)
    pool.cut(_make_bytes, BIG, _reading_in_parts)
    assert pool.resets == 1
    pool.outcomes.clear()
    pool.submit(_measure, b"next")
    pool.run(reset_when=None, timeout=30)
    assert pool.outcomes == [4]


@pytest.mark.parametrize(
    ("submit", "in_parts"),
    [((_make_bytes, BIG), _reading_in_parts), ((_measure, b"w" * BIG), _writing_in_parts)],
    ids=["result", "job"],
)
def test_celerys_own_pool_still_loses_a_message_cut_by_a_hub_reset(
    driven: Callable[[type[asynpool.AsynPool]], _Driven],
    submit: tuple[Callable[..., Any], Any],
    in_parts: Callable[[Hub], bool],
) -> None:
    """Why workers.celery_ext.pool exists: with Celery's AsynPool the same reset loses the message
    (the loop waits for ever, or fails on a garbled one). If this starts failing, Celery
    has fixed it and workers.celery_ext.pool can go."""
    pool = driven(asynpool.AsynPool)
    pool.cut(*submit, in_parts, after_reset=2)
    assert pool.resets == 1
    assert pool.outcomes == []
