"""Named schemas of the admin API's answers (``/v1/admin/...``), for the OpenAPI document.

As for the client API (``gateway.schemas``), the routes build their JSON themselves and
these models describe it - declared with ``responses={...: {"model": ...}}`` - so a code
generator gets named types; the admin integration tests validate real answers against
them and Schemathesis checks every answer's conformance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import TaskState

__all__ = [
    "AdminTaskPage",
    "AdminTaskRecord",
    "AdminTaskView",
    "AuditEntryView",
    "AuditPage",
    "AuditVerification",
    "BadEntry",
    "ClientList",
    "ClientView",
    "CreatedClient",
    "DeadLetterPage",
    "DeadLetterView",
    "KeyId",
    "KeyList",
    "PurgedDeadLetter",
    "Requeued",
    "RevokedToken",
    "RotatedSecret",
    "Stats",
    "TaskRevoked",
    "TaskWindowStats",
]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientView(_Schema):
    """A registered client (never its secret or the secret's hash)."""

    client_id: str
    name: str
    scopes: list[str] = Field(description="Sorted")
    rate_limit: str = Field(description='Token and submission limit, e.g. "120/minute"')
    max_queued: int = Field(description="Tasks it may have queued at once")
    disabled: bool
    created_at: str = Field(description="ISO 8601, UTC")
    secret_rotated_at: str = Field(description="ISO 8601, UTC")
    generation: int = Field(description="Bumped by disable and rotation: older tokens stop")


class ClientList(_Schema):
    """Every client whose stored record verifies; the ids of those that do not, apart."""

    items: list[ClientView]
    refused: list[str] = Field(description="Client ids whose records failed their MAC (audited)")


class CreatedClient(ClientView):
    """201 to a new client: its record and its secret, shown this once."""

    client_secret: str = Field(description="Shown once; store it now")


class RotatedSecret(_Schema):
    """The client's new secret, shown this once (the old one no longer works)."""

    client_id: str
    client_secret: str


class RevokedToken(_Schema):
    """The access token's id is revoked until ``until`` (past its expiry)."""

    jti: str
    revoked: Literal[True]
    until: int = Field(description="Unix time the revocation is kept until")


class AdminTaskView(TaskState):
    """A task as operators see it: its state and owner (never payload or result)."""

    owner: str | None = Field(description="The client that submitted it")


class AdminTaskRecord(AdminTaskView):
    """One task's metadata, with the queue it went to."""

    queue: str | None


class AdminTaskPage(_Schema):
    """One page of all tasks, newest first."""

    items: list[AdminTaskView]
    next: float | None = Field(description="Pass as `before` for the next page; null: last")


class TaskRevoked(_Schema):
    """202 to a revoke: ``revoked`` (it will never run) or ``cancelling`` (it is stopping)."""

    id: str
    status: Literal["revoked", "cancelling"]


class Requeued(_Schema):
    """202 to a requeue or retry: the dead letter is queued again with fresh attempts."""

    id: str
    status: Literal["queued"]
    replays: int = Field(description="Times it has been requeued, this one included")


class DeadLetterView(_Schema):
    """A dead-lettered task's metadata (never its payload)."""

    id: str
    task: str
    owner: str
    attempts: int
    reason: str = Field(description="Why it was dead-lettered (redacted)")
    dead_at: float = Field(description="Unix time")
    replays: int


class DeadLetterPage(_Schema):
    """One page of dead letters, newest first."""

    items: list[DeadLetterView]
    next: float | None = Field(description="Pass as `before` for the next page; null: last")


class PurgedDeadLetter(DeadLetterView):
    """The dead letter that was purged, with its sealed envelope and secrets."""

    purged: Literal[True]


class KeyId(_Schema):
    """A key's id and whether it is retired (still read, no longer used to write)."""

    kid: str
    retired: bool


class KeyList(_Schema):
    """Key ids by purpose (never key material) and how to rotate."""

    keys: dict[str, list[KeyId]]
    rotate: str


class TaskWindowStats(_Schema):
    """One task's outcomes over the window."""

    succeeded: int
    failed: int
    retried: int
    rejected: int
    revoked: int
    success_rate: float | None = Field(description="Succeeded / finished; null before any")
    runtime_p50_seconds: float | None
    runtime_p95_seconds: float | None
    failure_types: dict[str, int] = Field(description="Failures by error kind")


class Stats(_Schema):
    """Queue depths, backlog, dead letters, clients, audit size; per-task window stats."""

    window_seconds: int
    tasks: dict[str, TaskWindowStats]
    queues: dict[str, int] = Field(description="Messages waiting, per queue")
    queued_not_started: int
    dead_letters: int
    clients: int
    audit_records: int


class AuditEntryView(_Schema):
    """One audit record with its chain link (no payload or secret is ever recorded)."""

    id: str | None = Field(description="The stream id")
    seq: int
    prev: str = Field(description="The previous entry's MAC")
    kid: str
    writer: str = Field(description="The role whose key MACed it")
    mac: str
    time: float = Field(description="Unix time")
    when: str = Field(description="`time` as ISO 8601, UTC")
    actor: str
    action: str
    outcome: Literal["allowed", "denied", "ok", "error"]
    target: str
    request_id: str
    reason: str


class AuditPage(_Schema):
    """One page of audit records, oldest first."""

    items: list[AuditEntryView]
    next: str | None = Field(description="Pass as `after` for the next page; null: last")


class BadEntry(_Schema):
    """The first thing wrong in the chain."""

    index: int = Field(description="0-based position in this walk")
    stream_id: str | None
    reason: str
    detail: str = Field(description="E.g. the range of seqs missing from a cut log")


class AuditVerification(_Schema):
    """One bounded verification of the audit chain."""

    ok: bool
    stream: str
    count: int = Field(description="Entries verified before the first bad one")
    head_seq: int
    head_mac: str
    first_bad: BadEntry | None
    first_seq: int
    complete: bool = Field(description="The walk reached the head")
    next: str | None = Field(description="Pass as `after` to continue; null: complete")
    checkpoint_seq: int | None = Field(description="The signed anchor it started from")
