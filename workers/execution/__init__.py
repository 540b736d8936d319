"""Running a sealed task in a pool process: open and check its seal, pass the start gate,
resolve its secrets, run it, and record how it ended (success, refusal, retry, dead letter,
cancellation).

Modules:

* :mod:`workers.execution.admission`: Admitting a sealed task's run: the start gate's verdict,
  then its payload made ready.
* :mod:`workers.execution.cancel`: Stopping a running task that was cancelled, without Celery
  remote control.
* :mod:`workers.execution.fencing`: Fencing a run by its delivery's ownership token
  (``workers.liveness``): what a run checks before it records anything, and how a refused
  (stale) run ends.
* :mod:`workers.execution.outcomes`: How a sealed task's run ends, and how that is recorded.
* :mod:`workers.execution.redaction`: What Celery may see of a task's exception: its type's
  name, never its message.
* :mod:`workers.execution.registration`: Registering the declared tasks on a Celery app, each
  built on :class:`workers.execution.task.SealedTask` so that none runs unless it came sealed
  for it.
* :mod:`workers.execution.runtime`: What a worker process's tasks share at run time: keys, its
  Redis client, the audit writer, the lifecycle scripts - and the rule that an unreachable Redis
  requeues a message rather than failing it. :mod:`workers.execution.task` runs tasks on top of
  it; the sweeper, the consumer and cancellation use it too.
* :mod:`workers.execution.task`: Running declared tasks: open the seal, check its binding,
  resolve secrets, validate, run.
"""

from __future__ import annotations

__all__ = [
    "admission",
    "cancel",
    "fencing",
    "outcomes",
    "redaction",
    "registration",
    "runtime",
    "task",
]
