"""The states of a task record (the ``state`` field of ``tg:task:{id}``).

The gateway, the workers and the Lua scripts they run write and compare these values; the
HTTP API shows them as a task's ``status``. :class:`TaskState` is a ``StrEnum`` whose values
are the stored strings, so a member is the string itself (equal, same hash, written to
Redis and JSON as-is): use the members as constants, never ``TaskState(raw)`` on a hot path.
The Lua scripts keep their string literals; ``tests/unit/workers/test_task_states.py``
checks that each is a member.

Transitions: ``queued`` -> ``started`` -> ``succeeded`` | ``failed`` | ``dead_lettered``,
with ``retried`` between attempts; a cancelled task goes ``cancelling`` -> ``revoked``
(a queued one straight to ``revoked``); a dead letter requeued goes back to ``queued``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["FINISHED", "UNKNOWN", "TaskState"]


class TaskState(StrEnum):
    """A task record's ``state``: each value is exactly the string stored in Redis."""

    QUEUED = "queued"
    STARTED = "started"
    RETRIED = "retried"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    REVOKED = "revoked"


#: A task in one of these states never changes again (unless an operator requeues it).
FINISHED: Final = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD_LETTERED, TaskState.REVOKED}
)

#: The API's ``status`` for a record that has no ``state`` (never stored).
UNKNOWN: Final = "unknown"
