"""Revoking a task: one atomic decision on the state Redis holds.

A task not started yet is revoked outright (its start gate finds the revocation, which is
in Redis and so survives worker restarts); a running one is marked ``cancelling`` if its
declaration says ``cancellable`` (a worker stops it, ``workers.execution.cancel``) and refused with
409 otherwise; a finished one is left alone (409).
"""

from __future__ import annotations

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores.task_records import seal_of
from security.lua import lua_script
from workers.contract.states import FINISHED, TaskState
from workers.contract.wire import GLOBAL_QUEUED, queued_key, revoked_key, task_key

__all__ = ["revoke"]

# What it does, its KEYS and ARGV: the comment at the top of revoke.lua.
_REVOKE = lua_script("gateway.stores", "revoke.lua")


async def revoke(state: GatewayState, task_id: str, record: dict[str, str]) -> str:
    """Cancel a task that has not finished; returns its new status. ``record``: the
    task's record, its gateway fields verified (``gateway.stores.task_records.verify_task``).

    ``revoked``: it had not started and never will (the revocation is in Redis, so it
    survives worker restarts). ``cancelling``: it runs, its declaration says
    ``cancellable``, and the worker running it stops it and records ``revoked``. 409 if it
    runs and may not be interrupted, or has finished.
    """
    spec = state.catalogue.get(record.get("name", ""))
    ttl = state.settings.envelope_ttl + state.settings.result_ttl
    seal = seal_of(task_id, record)  # ``record`` was verified by the caller
    script = state.redis.register_script(_REVOKE)
    reply = await script(
        keys=[
            task_key(task_id),
            revoked_key(task_id),
            queued_key(record.get("owner", "")),
            GLOBAL_QUEUED,
            seal.bucket if seal is not None else task_key(task_id),
        ],
        args=[
            ttl,
            "1" if spec is not None and spec.cancellable else "0",
            task_id,
            seal.field if seal is not None else "",
            seal.bucket_expiry if seal is not None else 0,
            *sorted(FINISHED),
        ],
    )
    outcome = reply.decode() if isinstance(reply, bytes) else str(reply)
    if outcome in {TaskState.REVOKED, TaskState.CANCELLING}:
        return outcome
    if outcome == "missing":
        raise ApiError(404, "Not found", "no such task", kind="not-found")
    if outcome == "running":
        raise ApiError(
            409,
            "Not cancellable",
            "the task is running and its declaration does not allow cancellation",
            kind="not-cancellable",
        )
    finished = outcome.removeprefix("finished:")
    raise ApiError(409, "Already finished", f"the task is {finished}", kind="finished")
