"""What the console's pages show, read through the gateway's own stores (metadata only).

Task records are read through :func:`gateway.stores.checks.trusted_record` (a record failing its
MAC is refused and audited, never shown); dead letters through :mod:`gateway.stores.deadletters`.
Nothing here reads a payload, a sealed result or a secret.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from gateway.anchoring import newest_anchor
from gateway.routes.tasks import task_view
from gateway.state import GatewayState
from gateway.stores import checks as stored
from gateway.stores import deadletters
from security.errors import AuditError
from workers.contract.deadletters import DLQ_INDEX
from workers.contract.keys import AUDIT_STREAM, CLIENTS_SET, WORKERS
from workers.contract.states import FINISHED, UNKNOWN, TaskState
from workers.contract.wire import ALL_TASKS, GLOBAL_QUEUED, task_key

__all__ = [
    "EXPORT_PAGES",
    "OUTCOMES",
    "STREAM_ID",
    "TaskFilter",
    "dead_letter_groups",
    "is_stream_id",
    "overview",
    "search_tasks",
]

OUTCOMES = ("allowed", "denied", "ok", "error")
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
EXPORT_PAGES = 200  # an export streams at most 200 pages of 500 records (newest first)

_SCAN_CAP = 1000  # task records one search reads at most
_RECENT_CAP = 500  # task records the overview's last hour reads at most


def is_stream_id(text: str) -> bool:
    """A Redis stream id whose two parts fit in 64 bits."""
    return bool(STREAM_ID.fullmatch(text)) and all(int(p) < 2**64 for p in text.split("-"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _records(
    state: GatewayState, rows: list[Any], actor: str
) -> list[tuple[str, dict[str, str]]]:
    async with state.redis.pipeline(transaction=False) as pipe:
        for member, _score in rows:
            pipe.hgetall(task_key(_text(member)))
        raws = await pipe.execute()
    out = []
    for (member, _score), raw in zip(rows, raws, strict=True):
        if raw:
            task_id = _text(member)
            record = await stored.trusted_record(
                state, task_id, raw, actor=actor, request_id="console"
            )
            if record is not None:
                out.append((task_id, record))
    return out


async def overview(state: GatewayState, actor: str) -> dict[str, Any]:
    """Queues, workers, the last hour, dead letters waiting, the newest audit anchor."""
    now = time.time()
    queues = sorted({spec.queue for spec in state.catalogue} | {"taskgate"})
    async with state.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        pipe.zcard(GLOBAL_QUEUED)
        pipe.zcard(DLQ_INDEX)
        pipe.scard(CLIENTS_SET)
        pipe.xlen(AUDIT_STREAM)
        pipe.zrangebyscore(WORKERS, "-inf", "+inf", withscores=True)
        pipe.zcount(ALL_TASKS, now - 3600, "+inf")
        replies = await pipe.execute()
    depth = dict(zip(queues, replies[: len(queues)], strict=True))
    backlog, dead, clients, audit_len, workers, submitted = replies[len(queues) :]
    lapse = state.settings.heartbeat_lapse
    seen = [
        {"id": _text(member), "last": score, "alive": now - score <= lapse}
        for member, score in sorted(workers, key=lambda w: -w[1])
    ]
    rows = await state.redis.zrevrangebyscore(
        ALL_TASKS, "+inf", now - 3600, start=0, num=_RECENT_CAP, withscores=True
    )
    per_task: dict[str, Counter[str]] = defaultdict(Counter)
    runtimes: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    for _task_id, record in await _records(state, rows, actor):
        name, status = record.get("name", "?"), record.get("state", UNKNOWN)
        per_task[name][status] += 1
        outcomes[status] += 1
        started, finished = record.get("started_at"), record.get("finished_at")
        if started and finished:
            runtimes[name].append(float(finished) - float(started))
    tasks = []
    for name in sorted(per_task):
        counts = per_task[name]
        final = sum(counts[s] for s in FINISHED)
        tasks.append(
            {
                "name": name,
                "total": sum(counts.values()),
                "succeeded": counts[TaskState.SUCCEEDED],
                "rate": None if not final else counts[TaskState.SUCCEEDED] / final,
                "p50": _percentile(runtimes[name], 0.5),
                "p95": _percentile(runtimes[name], 0.95),
            }
        )
    try:
        anchor = await newest_anchor(state.settings.anchor_file, state.keys)
        checkpoint = None if anchor is None else anchor.checkpoint
        anchor_error = None
    except AuditError as exc:
        checkpoint, anchor_error = None, exc.reason
    return {
        "queues": depth,
        "backlog": backlog,
        "dead_letters": dead,
        "clients": clients,
        "audit_records": audit_len,
        "workers": seen,
        "submitted_hour": submitted,
        "sampled_hour": len(rows),
        "outcomes": dict(outcomes),
        "tasks": tasks,
        "checkpoint": checkpoint,
        "checkpoint_age": None if checkpoint is None else now - checkpoint.time,
        "anchor_error": anchor_error,
    }


@dataclass(frozen=True)
class TaskFilter:
    """Task search: exact name, owner and state; submitted in ``[since, until)``."""

    name: str | None = None
    owner: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50

    def matches(self, view: dict[str, Any]) -> bool:
        return (
            (self.name is None or view["task"] == self.name)
            and (self.owner is None or view["owner"] == self.owner)
            and (self.status is None or view["status"] == self.status)
        )


@dataclass
class TaskPage:
    items: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0
    capped: bool = False


async def search_tasks(state: GatewayState, query: TaskFilter, actor: str) -> TaskPage:
    """Newest first; reads at most ``_SCAN_CAP`` records (says so when it stopped there)."""
    upper: float | str = f"({query.until}" if query.until is not None else "+inf"
    lower: float | str = query.since if query.since is not None else "-inf"
    rows = await state.redis.zrevrangebyscore(
        ALL_TASKS, upper, lower, start=0, num=_SCAN_CAP, withscores=True
    )
    page = TaskPage(scanned=len(rows), capped=len(rows) == _SCAN_CAP)
    for task_id, record in await _records(state, rows, actor):
        view = {**task_view(task_id, record), "owner": record.get("owner", "")}
        if query.matches(view):
            page.items.append(view)
            if len(page.items) >= query.limit:
                break
    return page


async def dead_letter_groups(
    state: GatewayState, limit: int = 200
) -> tuple[list[dict[str, Any]], int]:
    """Dead letters grouped by task and failure type, newest first; and how many in all."""
    items, _ = await deadletters.list_dead(state.redis, limit=limit)
    total = await state.redis.zcard(DLQ_INDEX)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for dead in items:
        groups[(dead.name, dead.reason)].append(dead.public())
    out = [
        {"task": task, "reason": reason, "items": rows}
        for (task, reason), rows in sorted(groups.items(), key=lambda g: -len(g[1]))
    ]
    return out, total
