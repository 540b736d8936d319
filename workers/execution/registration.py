"""Registering the declared tasks on a Celery app, each built on
:class:`workers.execution.task.SealedTask` so that none runs unless it came sealed for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from workers.contract.catalogue import Catalogue, TaskSpec
from workers.execution.task import SealedTask

__all__ = ["register_catalogue"]


def _make_run(spec: TaskSpec) -> Callable[..., Any]:
    def run(payload: Any = None) -> Any:  # noqa: ARG001  # pragma: no cover - never reached
        raise RuntimeError(f"{spec.name} must be called through SealedTask")

    run.__name__ = spec.name.replace(".", "_").replace("-", "_")
    return run


def register_catalogue(app: Celery, catalogue: Catalogue) -> None:
    """Register every declared (non best-effort) task on ``app`` with :class:`SealedTask`,
    routed to its declared queue (``task_routes``; the per-task ``queue`` attribute is
    deprecated in Celery)."""
    routes: dict[str, dict[str, str]] = {}
    for spec in catalogue:
        if spec.best_effort:
            continue
        routes[spec.name] = {"queue": spec.queue}
        limits: dict[str, Any] = {
            name: value
            for name, value in (
                ("soft_time_limit", spec.soft_time_limit),
                ("time_limit", spec.time_limit),
            )
            if value is not None
        }
        app.task(
            name=spec.name,
            base=SealedTask,
            shared=False,  # this app's task only, not every Celery app the process builds
            spec=spec,
            acks_late=True,
            reject_on_worker_lost=True,
            **limits,
        )(_make_run(spec))  # type: ignore[no-untyped-call]  # celery-types: extra options
    app.conf.task_routes = {**(app.conf.task_routes or {}), **routes}
