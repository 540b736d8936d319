"""A gateway process's metric counts: counted in memory per request, flushed to Redis.

Every request only adds to a :class:`~workers.contract.metrics.MetricsBuffer`; a background
task moves the counts into ``tg:metrics:gateway`` with ``HINCRBY`` every
``TASKGATE_METRICS_FLUSH_INTERVAL`` seconds (one pipeline per interval, none while idle), so
a submission costs no Redis round trip for its metrics and ``/metrics`` sums what every
gateway process wrote. Counts Redis did not take are kept for the next flush; the last
ones go at shutdown. Labels are task names, outcome and reason codes - never a payload
value, a client id or a task id.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio

from gateway.background import cancel_and_wait
from gateway.http.errors import rule_for
from gateway.http.problems import ApiError
from gateway.submission.ratelimit import LimitState
from security.errors import TaskgateError
from workers.contract import metrics as m
from workers.contract.keys import METRICS_GATEWAY

__all__ = ["Metrics", "refusal_labels"]

log = logging.getLogger("taskgate.gateway")

AuditCounts = m.AuditCounts


def refusal_labels(
    exc: ApiError | TaskgateError, limits: list[LimitState]
) -> tuple[list[str], str | None]:
    """The rate-limit or backpressure scopes that refused a submission, and the input check
    (``validation`` or ``leak_guard``) that did, if any: the error's row says which."""
    rule = rule_for(type(exc))
    return rule.scopes(limits), rule.check


class Metrics:
    """This process's counts and the task that flushes them."""

    def __init__(self) -> None:
        self.buffer = m.MetricsBuffer()
        self._task: asyncio.Task[None] | None = None
        self._client: redis.asyncio.Redis | None = None
        self._audit = m.AuditDelta("gateway")

    # --- counting ----------------------------------------------------------------------

    def accepted(self, task: str, queue: str, seconds: float, *, sent: bool = True) -> None:
        """A submission of ``task`` was accepted (and queued for workers, if ``sent``)."""
        buffer = self.buffer
        buffer.inc(m.SUBMISSIONS, task, "accepted")
        if sent:
            buffer.inc(m.SENT, task, queue)
        buffer.observe(m.SUBMIT_SECONDS, seconds, task)

    def refused(self, task: str, exc: ApiError | TaskgateError, limits: list[LimitState]) -> None:
        """A submission of ``task`` was refused by ``exc`` (its outcome: the error's reason)."""
        self.buffer.inc(m.SUBMISSIONS, task, exc.reason)
        scopes, check = refusal_labels(exc, limits)
        for scope in scopes:
            self.buffer.inc(m.LIMIT_REFUSALS, scope)
        if check is not None:
            self.buffer.inc(m.INPUT_REFUSALS, task, check)

    def submissions(self, task: str, outcome: str) -> None:
        """A submission of ``task`` ended with ``outcome`` (neither accepted nor refused:
        ``idempotent_replay``, the task an earlier request queued)."""
        self.buffer.inc(m.SUBMISSIONS, task, outcome)

    def token(self, outcome: str) -> None:
        """A token request ended with ``outcome`` (``issued`` or a refusal reason)."""
        self.buffer.inc(m.TOKENS, outcome)

    def limit(self, scope: str) -> None:
        """A request was refused by the rate limit ``scope`` (outside submissions)."""
        self.buffer.inc(m.LIMIT_REFUSALS, scope)

    def replayed(self, task: str) -> None:
        """An operator requeued a dead letter of ``task``."""
        self.buffer.inc(m.REPLAYS, task)

    def audit_counts(self, source: AuditCounts) -> None:
        """Where this process's audit writer keeps its (appended, conflicts) counts."""
        self._audit.attach(source)

    # --- flushing ----------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write the pending counts; False if Redis did not take them (kept for next time)."""
        counts = self.buffer.drain()
        counts.update(self._audit.take())
        if not counts or self._client is None:
            self.buffer.restore(counts)
            return not counts
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                m.apply(pipe, METRICS_GATEWAY, counts)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.buffer.restore(counts)
            log.warning("metrics flush failed (%s); kept for the next one", type(exc).__name__)
            return False
        return True

    @classmethod
    def started(
        cls, client: redis.asyncio.Redis, interval: float, audit: AuditCounts | None = None
    ) -> Metrics:
        """New counts, flushed to ``client`` every ``interval`` seconds from now on, with
        the audit writer's counts (``audit``) among them."""
        metrics = cls()
        if audit is not None:
            metrics.audit_counts(audit)
        metrics.start(client, interval)
        return metrics

    def start(self, client: redis.asyncio.Redis, interval: float) -> None:
        """Flush to ``client`` every ``interval`` seconds in the background."""
        self._client = client
        if self._task is None:
            self._task = asyncio.create_task(self._run(interval), name="metrics-flush")

    async def stop(self) -> None:
        """Stop flushing in the background and flush what is left."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
