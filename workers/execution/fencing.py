"""Fencing a run by its delivery's ownership token (``workers.liveness``): what a run
checks before it records anything, and how a refused (stale) run ends.

A run carries its delivery's tag and token from the main process (``workers.celery_ext.request``).
The start gate, the success commit (the audit append's fence), a retry's and a failure's
record check the token still holds the delivery, inside the script each already runs; only
a dead letter - a rare path - reads it first. A run that finds it does not is stale: its
worker was presumed dead and the delivery reclaimed. It writes nothing, its result is
discarded, the refusal is audited (``task.fenced``) and its message is acknowledged only
in the worker's memory (``workers.celery_ext.transport``).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import redis
from celery.exceptions import Ignore

from security.audit.actions import AuditAction
from security.audit.store import Fence
from workers.celery_ext.request import DELIVERY_TAG, DELIVERY_TOKEN
from workers.contract.keys import INFLIGHT
from workers.execution.runtime import WorkerRuntime

__all__ = ["commit_fence", "delivery_fence", "refuse_stale", "still_held"]

log = logging.getLogger("taskgate.worker")


def delivery_fence(request: Any) -> tuple[str, str] | None:
    """(delivery tag, ownership token) of this run's delivery, if the consumer gave one."""
    tag = getattr(request, DELIVERY_TAG, None)
    token = getattr(request, DELIVERY_TOKEN, None)
    if isinstance(tag, str) and tag and isinstance(token, str) and token:
        return tag, token
    return None


def commit_fence(fence: tuple[str, str] | None) -> list[Fence]:
    """The audit append's condition for ``fence``: the holder record still names it."""
    return [(INFLIGHT, *fence)] if fence is not None else []


def still_held(client: redis.Redis, fence: tuple[str, str]) -> bool:
    """Does the token still hold the delivery? (One read of its own.)"""
    tag, token = fence
    holder = client.hget(INFLIGHT, tag)
    if isinstance(holder, bytes):
        holder = holder.decode()
    return holder == token


def refuse_stale(runtime: WorkerRuntime, name: str, task_id: str, reason: str) -> NoReturn:
    """End a stale run: audit the refusal (``task.fenced``), log it, write nothing else."""
    log.warning("task %s[%s]: %s", name, task_id, reason)
    try:
        runtime.audit(AuditAction.TASK_FENCED, target=task_id, outcome="denied", reason=reason)
    except Exception:  # the refusal stands even when the audit log is unreachable
        log.exception("could not audit the fenced run of %s", task_id)
    raise Ignore()
