"""``POST /v1/tasks/{name}``: one handler per task of the catalogue, over the stage list.

The handler takes only the ``Request`` (every FastAPI dependency would be resolved per
request, on the hot path); :mod:`gateway.http.fastlane` answers it without FastAPI's routing.
:func:`gateway.submission.refusals.admit` verifies the token and
:func:`gateway.submission.stages.run_stages` runs the stages; both audit and count their refusals,
so
the handler only turns the outcome into a response.
"""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from gateway.deps import state_of
from gateway.submission.best_effort import run_best_effort
from gateway.submission.context import Submission
from gateway.submission.ratelimit import limit_headers
from gateway.submission.refusals import admit
from gateway.submission.stages import BEST_EFFORT_STAGES, STAGES, IdempotentReplay, run_stages
from workers.contract.catalogue import TaskSpec
from workers.contract.states import TaskState

__all__ = ["submit_route"]

_QUEUED: Final = TaskState.QUEUED  # bound once: an enum member read costs ~80 ns each time


def submit_route(spec: TaskSpec) -> Any:
    """The POST handler for one task of the catalogue (broker lane or best-effort lane)."""
    stages = BEST_EFFORT_STAGES if spec.best_effort else STAGES

    # Only the Request: every FastAPI dependency is resolved per request, on the hot path.
    async def submit(request: Request) -> Any:
        state = state_of(request)
        ctx = await admit(request, state, spec)
        started = time.monotonic()
        try:
            ctx = await run_stages(ctx, state, stages)
        except IdempotentReplay as replay:
            state.metrics.submissions(spec.name, "idempotent_replay")
            return _accepted(replay.task_id, ctx, replayed=True)
        state.metrics.accepted(
            spec.name, spec.queue, time.monotonic() - started, sent=not spec.best_effort
        )
        response = _accepted(ctx.task_id, ctx, replayed=False)
        if spec.best_effort:  # runs after the reply is sent, like BackgroundTasks
            response.background = BackgroundTask(
                run_best_effort, state, spec, ctx.task_id, ctx.payload
            )
            ctx.payload = {}
        return response

    submit.__name__ = f"submit_{spec.name.replace('.', '_').replace('-', '_')}"
    return submit


def _accepted(task_id: str, ctx: Submission, *, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/tasks/{task_id}", **limit_headers(ctx.limits)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    body = {"id": task_id, "status": _QUEUED, "links": {"self": f"/v1/tasks/{task_id}"}}
    return JSONResponse(body, status_code=202, headers=headers)
