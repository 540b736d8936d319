"""Declaring tasks: one declaration serves gateway validation and worker execution.

This module imports neither Celery nor FastAPI, so the gateway can read schemas,
secret fields, scopes and limits from it. ``workers.execution.task`` turns the same
declarations into Celery tasks.

    from pydantic import BaseModel
    from workers.contract.catalogue import task

    class Greeting(BaseModel):
        name: str

    @task("demo.greet", schema=Greeting)
    def greet(payload: Greeting) -> dict[str, str]:
        return {"greeting": f"hello {payload.name}"}
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Catalogue",
    "RetryPolicy",
    "TaskSpec",
    "default_catalogue",
    "load_task_modules",
    "task",
]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter.

    ``max_attempts`` counts every run (1 = never retried). Only exceptions that are
    instances of ``retry_on`` are retried; anything else fails at once.
    """

    max_attempts: int = 1
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError)

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before run number ``attempt + 1`` (``attempt`` starts at 1).

        The upper bound grows as base * 2**(attempt-1), capped; with jitter the delay is
        drawn from [bound/2, bound] so retries spread out but still grow.
        """
        bound = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        if not self.jitter:
            return float(bound)
        draw = (rng or random).uniform(0.5, 1.0)
        return float(bound * draw)


@dataclass(frozen=True)
class TaskSpec:
    """Everything about one task, declared once."""

    name: str
    schema: type[BaseModel]
    fn: Callable[..., Any]
    secret_fields: tuple[str, ...] = ()
    scope: str = ""
    rate_limit: str = "120/minute"
    max_payload_bytes: int = 64 * 1024
    queue: str = "taskgate"
    soft_time_limit: int | None = None
    time_limit: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    best_effort: bool = False
    # May be interrupted mid-run by DELETE /v1/tasks/{id}: the body must tolerate being
    # stopped at any point (no half-done side effects) or clean up when
    # SoftTimeLimitExceeded reaches it. False: a running task is never interrupted.
    cancellable: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or set(self.name) - _NAME_CHARS or len(self.name) > 100:
            raise ValueError(f"task name {self.name!r}: use lowercase letters, digits, . _ -")
        if not self.scope:
            object.__setattr__(self, "scope", f"tasks:submit:{self.name}")
        if self.max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be positive")
        if self.best_effort and self.cancellable:
            raise ValueError("a best_effort task runs in the gateway and cannot be cancellable")
        if self.time_limit and self.soft_time_limit and self.soft_time_limit >= self.time_limit:
            raise ValueError("soft_time_limit must be below time_limit")
        top = set(self.schema.model_fields)
        for path in self.secret_fields:
            if path.split(".", 1)[0] not in top:
                raise ValueError(f"secret field {path!r} is not in {self.schema.__name__}")


class Catalogue:
    """A registry of task declarations, by name."""

    def __init__(self, specs: Sequence[TaskSpec] = ()) -> None:
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: TaskSpec) -> TaskSpec:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise ValueError(f"task {spec.name!r} is declared twice")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)


default_catalogue = Catalogue()


def task(
    name: str,
    *,
    schema: type[BaseModel],
    catalogue: Catalogue | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``fn`` as task ``name`` taking a validated ``schema`` instance."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        spec = TaskSpec(
            name=name, schema=schema, fn=fn, description=(fn.__doc__ or "").strip(), **options
        )
        (catalogue or default_catalogue).add(spec)
        return fn

    return register


def load_task_modules(modules: Sequence[str]) -> None:
    """Import every module listed in ``TASKGATE_TASK_MODULES`` so its tasks register."""
    for module in modules:
        importlib.import_module(module)


class StrictModel(BaseModel):
    """Base for payload schemas: unknown fields are refused, strings stripped of nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
