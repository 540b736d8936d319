"""The contract between gateway and workers: content types, bindings, Redis key layout.

Dependency-free so the gateway can import it without Celery or kombu. The key names are
declared in :mod:`workers.contract.keys` (with who may write them) and re-exported here.

``tg:task:{id}``         hash: name, owner, state, submitted_at, started_at, finished_at,
                         attempts, error (a redacted summary), queue, requeues (by the
                         sweeper) - never the payload
``tg:tasks:{client}``    sorted set of the client's task ids by submission time
``tg:queued:{client}`` / ``tg:queued``  sorted sets of accepted-but-not-started ids
                         (backpressure); a worker removes the id when the task starts
``tg:revoked:task:{id}`` a revocation that survives worker restarts
``tg:done:{id}``         completion record: a redelivered finished task is not run again
``tg:msg:{id}``          the broker message exactly as the gateway queued it (sealed body),
                         until a worker's start gate takes the task: the gate records the
                         delivery in kombu's ``unacked`` hash from it
                         (``workers.celery_ext.transport``),
                         and the sweeper re-queues it if the broker lost the message
                         (``workers.sweeper``)
``tg:sweep:suspect:{id}`` when a sweep first found that message neither queued nor in flight
``tg:sweep:lock``        which worker sweeps (renewed by its sweeps, expires after two intervals)
``tg:replay:{window}``   final markers, create-only (``HSETNX``): field ``{task id}:{seal iat}``,
                         value the final state (succeeded, failed, dead_lettered, revoked) of
                         the run of that one gateway seal. A start gate that finds its seal's
                         marker does not run the task. Bucketed by the seal's expiry
                         (:data:`REPLAY_WINDOW`); the gateway creates each bucket with its
                         ``EXPIREAT`` before publishing into it, and a worker only adds fields
                         to a bucket that exists (it never deletes or expires one).

The gateway's own fields of ``tg:task:{id}`` (owner, name, seal_iat, seal_exp, replays) are
MAC'd with the state key in ``state_mac`` (``gateway.stores.task_records``); workers read them and
never write them.
"""

from __future__ import annotations

import re
from typing import Any

from workers.contract.keys import (
    ALL_TASKS,
    DEFAULT_QUEUE,
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    REPLAY_MARGIN,
    REPLAY_WINDOW,
    SWEEP_LOCK,
    done_key,
    message_copy_key,
    owner_index,
    queued_key,
    replay_bucket,
    replay_bucket_expiry,
    replay_field,
    revoked_key,
    suspect_key,
    task_key,
)

__all__ = [
    "ALL_TASKS",
    "DEFAULT_QUEUE",
    "GATEWAY_COPY",
    "GLOBAL_QUEUED",
    "KOMBU_UNACKED",
    "KOMBU_UNACKED_INDEX",
    "PING_TASK",
    "REPLAY_MARGIN",
    "REPLAY_WINDOW",
    "REQUEST_ID_HEADER",
    "RESULT_BINDING",
    "RESULT_CONTENT_TYPE",
    "SWEEP_LOCK",
    "TASK_CONTENT_TYPE",
    "TASK_ID",
    "decode_record",
    "done_key",
    "message_copy_key",
    "owner_index",
    "queued_key",
    "replay_bucket",
    "replay_bucket_expiry",
    "replay_field",
    "revoked_key",
    "suspect_key",
    "task_key",
]

TASK_CONTENT_TYPE = "application/x-taskgate-sealed"
RESULT_CONTENT_TYPE = "application/x-taskgate-sealed-result"
RESULT_BINDING = "celery.result"  # the "task name" a result envelope is bound to
PING_TASK = "system.ping"


TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# A broker message property: the gateway keeps this message's copy (``tg:msg:{id}``), so
# the worker's start gate records the first delivery as in flight, from the copy, instead
# of the consumer (``workers.celery_ext.transport``).
GATEWAY_COPY = "taskgate_copy"
# A broker message header: the id of the gateway request that submitted the task, so the
# worker's log events name it too (``workers.lifecycle_log``). Correlation metadata only.
REQUEST_ID_HEADER = "taskgate_request_id"


def decode_record(raw: dict[Any, Any]) -> dict[str, str]:
    """A task hash from redis-py (bytes) as text."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
