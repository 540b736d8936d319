"""Worker process settings (``TASKGATE_*``), built by the CLI or tests, never at import."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from security.config import CommonSettings, env_name
from security.errors import ConfigError

__all__ = ["WorkerSettings"]


class WorkerSettings(CommonSettings):
    """Settings of a Celery worker process."""

    client_role: ClassVar[str] = "worker-client"
    redis_role: ClassVar[str] = "worker"

    concurrency: int = Field(default=2, ge=1, le=256)
    queues: list[str] = Field(default_factory=lambda: ["taskgate"])
    loglevel: str = "INFO"
    # Defaults for tasks that declare none; each task may tighten them.
    task_soft_time_limit: int = Field(default=240, ge=1)
    task_time_limit: int = Field(default=300, ge=1)
    # Longest countdown/ETA a retry may ask for; the visibility timeout must exceed it.
    max_retry_delay: int = Field(default=600, ge=0)
    # Headroom on top of the longest run + delay before Redis redelivers a message.
    visibility_margin: int = Field(default=300, ge=1)
    result_ttl: int = Field(default=86_400, ge=60)
    # Runs of one attempt: a run cut off (pool process killed, worker lost, Redis gone
    # mid-run) starts again, up to this many runs; once that many were cut off, the next
    # delivery dead-letters the task ("InterruptedRuns"): a message that crashes its
    # worker every time does not loop for ever.
    max_interrupted_runs: int = Field(default=3, ge=1, le=100)
    # How often (s) a worker looks whether a cancellable task it runs was cancelled
    # (workers/execution/cancel.py); only while such a task runs.
    cancel_check_interval: float = Field(default=0.5, gt=0, le=10)
    task_modules: list[str] = Field(default_factory=list)
    # The lost-message sweeper (workers/sweeper.py): one worker at a time looks every
    # sweep_interval seconds; a task is looked at once it has waited sweep_grace seconds,
    # and its message is re-queued only after it has been missing from the queue and from
    # kombu's in-flight hash for sweep_grace seconds more. A message the sweeper looks at
    # has a copy, so its worker's start gate records it (workers/celery_ext/transport.py): it is
    # missing only between the pop and the gate, normally milliseconds; the grace is that
    # window's margin for a worker cut off from Redis or frozen right after its pop.
    sweep_interval: float = Field(default=30, gt=0, le=3600)
    sweep_grace: float = Field(default=150, gt=0)
    sweep_batch: int = Field(default=200, ge=1, le=1000)
    # Heartbeats (workers/heartbeat.py): each worker instance beats every interval; the
    # gateway counts a worker whose last beat is older than the lapse as gone.
    heartbeat_interval: float = Field(default=5.0, gt=0, le=60)
    heartbeat_lapse: float = Field(default=15.0, gt=0, le=300)
    # Celery task events for Flower (`taskgate flower`): names, states, runtimes, workers
    # and queues; arguments, results and exception messages are sealed placeholders
    # (workers.celery_ext.request). Off: nothing is published.
    task_events: bool = False

    @model_validator(mode="after")
    def _beats_within_lapse(self) -> Self:
        """A lapse of one interval or less would count a live worker as gone between beats."""
        if self.heartbeat_interval >= self.heartbeat_lapse:
            raise ConfigError(
                env_name("heartbeat_interval"),
                f"is not below {env_name('heartbeat_lapse')}",
                "beat several times per lapse (defaults: 5 s and 15 s)",
            )
        return self

    @property
    def visibility_timeout(self) -> int:
        """Seconds before Redis redelivers an unacknowledged message.

        It must exceed the longest run plus the longest ETA, or Redis hands the same
        message to a second worker while the first still runs it (celery #5306, #2599).
        """
        return self.task_time_limit + self.max_retry_delay + self.visibility_margin
