"""Named schemas of the client API's answers, for the OpenAPI document.

The routes build their JSON by hand (the submission route on the hot path, where a response
model's validation would cost per request), so these models describe the answers - declared
with ``responses={...: {"model": ...}}`` - rather than produce them. Schemathesis checks in
the integration tests that the answers match.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Accepted",
    "Cancellation",
    "CatalogEntry",
    "Catalogue",
    "FieldProblem",
    "Links",
    "Liveness",
    "Problem",
    "Ready",
    "TaskError",
    "TaskPage",
    "TaskState",
    "TaskView",
    "TokenResponse",
]

TaskStatus = Literal[
    "queued",
    "started",
    "retried",
    "cancelling",
    "succeeded",
    "failed",
    "dead_lettered",
    "revoked",
    "unknown",
]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Links(_Schema):
    """Where to follow the task."""

    self: str = Field(description="The task's status URL, e.g. /v1/tasks/{id}")


class Accepted(_Schema):
    """202 to a submission: the task is queued (or, with a reused Idempotency-Key, it is
    the task accepted before - then the ``Idempotent-Replayed: true`` header is set)."""

    id: str = Field(description="The task id (UUID)")
    status: Literal["queued"]
    links: Links


class TaskError(_Schema):
    """Why the task's latest attempt failed. Present only while the task is ``retried``,
    ``failed`` or ``dead_lettered``: an attempt that later succeeds leaves no error."""

    type: str = Field(description="The error kind, e.g. an exception name or a refusal code")
    detail: str | None = Field(default=None, description="A short, redacted explanation")
    attempt: int = Field(description="The attempt the error belongs to")


class TaskState(_Schema):
    """A task's state and timings (never its payload or result): shared by the views."""

    id: str
    task: str | None = Field(description="The task's name")
    status: TaskStatus
    attempts: int
    runs: int = Field(
        default=0,
        description="Runs of the task's body, whatever the attempt; above `attempts` when a "
        "run was cut off (worker killed, Redis gone) and ran again",
    )
    links: Links
    submitted_at: float | None = Field(default=None, description="Unix time")
    started_at: float | None = Field(default=None, description="Unix time")
    finished_at: float | None = Field(default=None, description="Unix time")
    error: TaskError | None = None


class TaskView(TaskState):
    """A task's state and timings; for its owner, the result once it succeeded."""

    result: Any = Field(default=None, description="The task's result (owner only, succeeded)")


class TaskPage(_Schema):
    """One page of the caller's tasks, newest first."""

    items: list[TaskView]
    next: float | None = Field(description="Pass as `before` for the next page; null: last")


class CatalogEntry(_Schema):
    """A task the caller may submit."""

    name: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema", description="The payload's JSON Schema")
    secret_fields: list[str]
    scope: str
    rate_limit: str | None
    max_payload_bytes: int
    best_effort: bool
    cancellable: bool
    submit: str = Field(description="The submission URL")


class Catalogue(_Schema):
    """The tasks the caller's token may submit."""

    tasks: list[CatalogEntry]


class Cancellation(_Schema):
    """202 to a cancel: ``revoked`` (it will never run) or ``cancelling`` (it is stopping)."""

    id: str
    status: Literal["revoked", "cancelling"]
    links: Links


class TokenResponse(_Schema):
    """An OAuth2 access token (RFC 6749 section 5.1)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class FieldProblem(BaseModel):
    """One refused field: its dotted path and a fixed message (never the value)."""

    field: str | None
    kind: str | None = None
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details: every error the gateway sends."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URL naming the problem kind")
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldProblem] | None = Field(default=None, description="422: the refused fields")
    error: str | None = Field(default=None, description="Token refusals: the OAuth2 code")


class Liveness(_Schema):
    """The process serves requests."""

    status: Literal["ok"]


class Ready(_Schema):
    """Every readiness check passed (a failed one is a 503 problem naming it)."""

    status: Literal["ready"]
    checks: dict[str, str]
    live_workers: int | None = None
