"""The best-effort lane: a task run by the gateway itself, after the 202, with no broker.

Same authentication, limits, validation, leak guard and audit as every submission; the
payload (secrets included) lives only in this process's memory until the run ends. It
is NOT durable: a gateway restart or crash loses it, there are no retries and no dead
letters. Declare a task ``best_effort=True`` only for work that may be lost (a cache
warm-up, a non-critical notification) - never for anything that must happen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError

from gateway.state import GatewayState
from security.audit import Outcome
from security.audit.actions import AuditAction
from workers.contract.catalogue import TaskSpec
from workers.contract.states import TaskState
from workers.contract.wire import task_key

__all__ = ["run_best_effort"]

log = logging.getLogger("taskgate.gateway")


async def run_best_effort(
    state: GatewayState, spec: TaskSpec, task_id: str, payload: dict[str, Any]
) -> None:
    """Run ``spec`` in a thread; record the outcome; never raise (nothing is waiting)."""
    key = task_key(task_id)
    outcome: Outcome = "ok"
    error = ""
    try:
        await state.redis.hset(
            key,
            mapping={
                "state": TaskState.STARTED,
                "started_at": f"{time.time():.6f}",
                "attempts": "1",
            },
        )
        model = spec.schema.model_validate(payload)
        await asyncio.to_thread(spec.fn, model)
    except (ValidationError, Exception) as exc:  # noqa: BLE001 - recorded, then dropped: best effort
        outcome, error = "error", type(exc).__name__
        log.warning("best-effort task %s[%s] failed: %s", spec.name, task_id, error)
    finally:
        payload.clear()
    fields: dict[Any, Any] = {
        "state": TaskState.SUCCEEDED if outcome == "ok" else TaskState.FAILED,
        "finished_at": f"{time.time():.6f}",
    }
    if error:
        fields["error"] = error
    try:
        await state.redis.hset(key, mapping=fields)
        await state.record(
            actor="gateway",
            action=AuditAction.TASK_BEST_EFFORT,
            outcome=outcome,
            target=task_id,
            reason=error,
        )
    except Exception:  # noqa: BLE001 - the client already has its 202; log and move on
        log.warning("could not record the outcome of best-effort task %s", task_id)
