"""What the SDK returns: typed views of the gateway's JSON answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "FINAL_STATUSES",
    "Accepted",
    "CatalogEntry",
    "Task",
    "TaskError",
    "TaskPage",
]

#: A task in one of these states never changes again.
FINAL_STATUSES: Final = frozenset({"succeeded", "failed", "dead_lettered", "revoked"})


@dataclass(frozen=True, slots=True)
class Accepted:
    """A submission the gateway accepted (202). ``replayed``: an earlier submission with the
    same ``idempotency_key`` was found, so this is that task, not a new one."""

    id: str
    status: str
    idempotency_key: str
    replayed: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any], *, key: str, replayed: bool) -> Accepted:
        return cls(
            id=str(body["id"]), status=str(body["status"]), idempotency_key=key, replayed=replayed
        )


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why the task's latest attempt failed: a kind, a short redacted detail, the attempt."""

    type: str
    detail: str | None = None
    attempt: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> TaskError | None:
        if not isinstance(body, dict):
            return None
        attempt = body.get("attempt")
        return cls(
            type=str(body.get("type", "error")),
            detail=None if body.get("detail") is None else str(body["detail"]),
            attempt=attempt if isinstance(attempt, int) else None,
        )


@dataclass(frozen=True, slots=True)
class Task:
    """A task as its owner sees it. ``result`` is set once it succeeded (kept out of the
    repr: results belong in the caller's own storage, not in its logs)."""

    id: str
    task: str | None
    status: str
    attempts: int = 0
    runs: int = 0  # runs of the body; above attempts when a cut-off run ran again
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = field(default=None, repr=False)
    error: TaskError | None = None

    @property
    def finished(self) -> bool:
        """True once the task is in a final state (it will not change again)."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Task:
        def stamp(name: str) -> float | None:
            value = body.get(name)
            return float(value) if isinstance(value, int | float) else None

        return cls(
            id=str(body["id"]),
            task=None if body.get("task") is None else str(body["task"]),
            status=str(body.get("status", "unknown")),
            attempts=int(body.get("attempts") or 0),
            runs=int(body.get("runs") or 0),
            submitted_at=stamp("submitted_at"),
            started_at=stamp("started_at"),
            finished_at=stamp("finished_at"),
            result=body.get("result"),
            error=TaskError.from_json(body.get("error")),
        )


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of ``GET /v1/tasks``; ``next`` is the cursor of the following page."""

    items: tuple[Task, ...]
    next: float | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskPage:
        cursor = body.get("next")
        return cls(
            items=tuple(Task.from_json(item) for item in body.get("items", [])),
            next=float(cursor) if isinstance(cursor, int | float) else None,
        )


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A task the caller may submit: its JSON Schema, secret fields and limits."""

    name: str
    description: str
    schema: dict[str, Any] = field(repr=False)
    secret_fields: tuple[str, ...]
    scope: str
    rate_limit: str | None
    max_payload_bytes: int
    best_effort: bool
    cancellable: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CatalogEntry:
        return cls(
            name=str(body["name"]),
            description=str(body.get("description", "")),
            schema=dict(body.get("schema", {})),
            secret_fields=tuple(str(f) for f in body.get("secret_fields", [])),
            scope=str(body.get("scope", "")),
            rate_limit=None if body.get("rate_limit") is None else str(body["rate_limit"]),
            max_payload_bytes=int(body.get("max_payload_bytes", 0)),
            best_effort=bool(body.get("best_effort", False)),
            cancellable=bool(body.get("cancellable", False)),
        )
