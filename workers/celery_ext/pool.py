"""Celery's prefork pool, keeping a half-transferred message across a broker reconnect.

The worker's main process talks to its pool processes over pipes, through the same event
loop (kombu's hub) as the broker connection. A message too big for one read - a result
whose writer was preempted between header and body, a job larger than the pipe's free
space - is moved on by a generator the hub holds as that pipe's reader or writer.

When the broker connection breaks (a Redis restart), Celery's consumer resets the hub
(``celery/worker/loops.py``: ``hub.reset()`` drops every reader and writer) and, once
reconnected, registers the pool again (``AsynPool.register_with_event_loop``), which adds
a fresh reader for each result pipe. A result that was half read is then read from the
middle of its body: garbage length, "UnpicklingError: invalid load key" that stops the
worker, or a reader waiting for ever. The task's real outcome is never seen, it runs into
its hard time limit and is acknowledged as failed - while its record still says started.
A job that was half written is never finished: that pool process waits for the rest of it
and its pipe stays marked busy, so it gets no work again.

Here the pool remembers each transfer still under way and, when it is registered again,
hands the same generator back to the hub, so the message resumes where it stopped.
Everything else is Celery's ``AsynPool``; the worker selects it with ``worker_pool``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from inspect import GEN_CLOSED, getgeneratorstate
from typing import Any

from celery.concurrency import asynpool, prefork

__all__ = ["ResumingAsynPool", "ResumingResultHandler", "TaskPool"]

log = logging.getLogger("taskgate.worker")

Transfer = Generator[None, None, None]


class ResumingResultHandler(asynpool.ResultHandler):
    """Celery's result reader, noting which result pipes are part-way through a message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # result pipe fd -> (its process, the generator reading its current message)
        self.partial_reads: dict[int, tuple[Any, Transfer]] = {}

    def _make_process_result(self, hub: Any) -> Callable[[int], None]:
        # Celery's own reader (asynpool.ResultHandler._make_process_result), plus the
        # bookkeeping of a read left part-way. (celery-types omits these attributes.)
        me: Any = self
        fileno_to_outq = me.fileno_to_outq
        on_state_change = me.on_state_change
        add_reader = hub.add_reader
        remove_reader = hub.remove_reader
        recv_message = me._recv_message
        partial = self.partial_reads

        def message_read(fd: int, callback: Any, *args: Any) -> None:
            # _recv_message calls this once the message is whole, to read the next one
            # with the plain handler again.
            partial.pop(fd, None)
            add_reader(fd, callback, *args)

        def on_result_readable(fileno: int) -> None:
            try:
                proc = fileno_to_outq[fileno]
            except KeyError:  # process gone
                partial.pop(fileno, None)
                return remove_reader(fileno)  # type: ignore[no-any-return]
            it = recv_message(message_read, fileno, on_state_change)
            try:
                next(it)
            except StopIteration:
                pass
            except (OSError, EOFError):
                remove_reader(fileno)
            else:
                partial[fileno] = (proc, it)
                add_reader(fileno, it)
            return None

        return on_result_readable

    def resume_partial_reads(self, hub: Any) -> int:
        """Give the hub back the reader of every message left part-way (after a reset);
        returns how many."""
        me: Any = self
        resumed = 0
        for fd, (proc, it) in list(self.partial_reads.items()):
            if me.fileno_to_outq.get(fd) is proc and getgeneratorstate(it) != GEN_CLOSED:
                hub.add_reader(fd, it)
                resumed += 1
            else:  # the process has gone, or the reader ended (it failed): nothing to resume
                del self.partial_reads[fd]
        return resumed


class ResumingAsynPool(asynpool.AsynPool):
    """``AsynPool`` whose half-read results and half-written jobs survive a hub reset."""

    ResultHandler = ResumingResultHandler

    def register_with_event_loop(self, hub: Any) -> None:
        super().register_with_event_loop(hub)
        me: Any = self  # celery-types omits the pool's private attributes
        reads = me._result_handler.resume_partial_reads(hub)
        writes = _resume_partial_writes(me, hub)
        if reads or writes:
            log.info("pool: resumed %d result(s) and %d job(s) cut by a reconnect", reads, writes)


def _resume_partial_writes(pool: Any, hub: Any) -> int:
    """Give the hub back the writer of every job left part-way (after a reset); returns
    how many.

    A job being written is in the pool's cache with a weak reference to its writer
    (``job._writer``), which stays in ``_active_writers`` until it finishes; its pipe is
    the write end of the inqueue of the process it is written to (``job._write_to``).
    """
    resumed = 0
    for job in list(pool._cache.values()):
        ref = getattr(job, "_writer", None)
        writer = ref() if ref is not None else None
        proc = getattr(job, "_write_to", None)
        if writer is None or proc is None or writer not in pool._active_writers:
            continue
        if (
            getgeneratorstate(writer) != GEN_CLOSED
            and pool._fileno_to_inq.get(proc.inqW_fd) is proc
        ):
            hub.add_writer(proc.inqW_fd, writer)
            resumed += 1
    return resumed


class TaskPool(prefork.TaskPool):
    """The prefork pool, with :class:`ResumingAsynPool` under the worker's event loop."""

    Pool = ResumingAsynPool
