"""Side effects that run once per task, however often the task's body runs.

A task's body can run again: after its worker died, after Redis lost the completion of a
run that had finished, after a retry. An effect wrapped in :func:`once` records its
completion in Redis (``tg:once:{task id}``, one field per effect name) right after it ran,
before the task is acknowledged; a later run of the same task finds the record and skips
the effect::

    from workers.once import once

    @task("billing.charge", schema=Charge, secret_fields=("api_key",))
    def charge(payload: Charge) -> dict[str, object]:
        done = once("charge", lambda: provider.charge(payload.amount, key=payload.api_key))
        return {"charged": True, "again": not done.ran}

Note: the window it cannot close is the effect whose completion could not be recorded at
all: the process dies (or Redis loses the write: with ``appendfsync everysec`` up to a
second of writes) between the effect and its record. Then a later run does the effect
again. Effects that the other side can deduplicate should also carry an id derived from the
task id (``email.send`` sets its ``Message-ID`` so).

The record holds the effect's name and when it ran - never its result, which may carry
payload data; a skipped effect's value is ``None``. Recording waits through a short Redis
outage (``record_for`` seconds, retrying) before it gives up with :class:`OnceNotRecorded`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

from security.errors import TaskgateError
from workers.contract.keys import once_key

__all__ = ["Done", "Once", "OnceNotRecorded", "once"]

T = TypeVar("T")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")


class OnceNotRecorded(TaskgateError):
    """The effect ran, but Redis stayed unreachable: its completion is not recorded."""

    default_reason = "once_not_recorded"


@dataclass(frozen=True)
class Done(Generic[T]):
    """What :func:`once` did: ``ran`` False means an earlier run had done the effect."""

    ran: bool
    value: T | None


class Once:
    """Effects of one task, recorded in ``tg:once:{task_id}`` for ``ttl`` seconds."""

    def __init__(
        self,
        client: redis.Redis,
        task_id: str,
        *,
        ttl: int,
        record_for: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._key = once_key(task_id)
        self._ttl = ttl
        self._record_for = record_for
        self._clock = clock
        self._sleep = sleep

    def run(self, name: str, effect: Callable[[], T]) -> Done[T]:
        """Run ``effect`` unless this task already recorded ``name``; record it after."""
        if not _NAME.fullmatch(name):
            raise ValueError("an effect name is 1-64 of a-z 0-9 _ . : - (lowercase first)")
        if self._client.hexists(self._key, name):
            return Done(ran=False, value=None)
        value = effect()
        self._record(name)
        return Done(ran=True, value=value)

    def _record(self, name: str) -> None:
        deadline = self._clock() + self._record_for
        delay = 0.05
        while True:
            try:
                pipe = self._client.pipeline(transaction=True)
                pipe.hsetnx(self._key, name, f"{time.time():.6f}")
                pipe.expire(self._key, self._ttl)
                pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self._clock() >= deadline:
                    raise OnceNotRecorded(
                        f"effect {name!r} ran but its completion could not be recorded "
                        f"({type(exc).__name__})"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 1.0)


def once(name: str, effect: Callable[[], Any]) -> Done[Any]:
    """Run ``effect`` at most once for the task being run (see the module docstring)."""
    from celery import current_task

    from workers.execution.runtime import _runtime

    task = current_task
    if task is None or not task.request.id:
        raise RuntimeError("once() runs inside a taskgate task")
    runtime = _runtime(task.app)
    recorder = Once(runtime.client(), str(task.request.id), ttl=runtime.record_ttl)
    return recorder.run(name, effect)
