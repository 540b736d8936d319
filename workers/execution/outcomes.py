"""How a sealed task's run ends, and how that is recorded.

:class:`OutcomeTask` is the base of ``workers.execution.task.SealedTask``: that module admits
and runs a task, this one holds what happens once its fate is known, so that each stays
readable on its own.

A success is committed in one atomic script call: completion record, task record, sealed
result, vault deletion, the ``task.succeeded`` audit record and the acknowledgement of
the message itself (``workers.celery_ext.request``: the main process then only frees its slot).
A refusal is audited, logged without payload, and the message is rejected without
requeue (acknowledged: no redelivery loop). Secrets are deleted once the task is
finished for good (success, or a failure that will not be retried). A run whose delivery
was reclaimed meanwhile records nothing (``workers.execution.fencing``). A task goes to the dead
letters, still sealed with its secrets kept (:func:`bury`), when its retry policy is
spent, when its run is stopped at the hard time limit (decided in the worker's main
process: ``stopped_at_time_limit``, called by ``workers.celery_ext.request``), or when ``max_runs``
runs of one attempt were all cut off (counted by the start gate).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final, NoReturn

from celery import Task, states
from celery.exceptions import Ignore, Reject, TimeLimitExceeded

from security.audit import Earlier, Write
from security.audit.actions import AuditAction
from security.errors import AuditError, InputRejectedError, TaskgateError
from security.vault import reference_ids, vault_key
from workers import lifecycle_log
from workers.celery_ext.request import DELIVERY_TAG
from workers.contract.catalogue import TaskSpec
from workers.contract.deadletters import dead_letter
from workers.contract.keys import INFLIGHT
from workers.contract.states import TaskState
from workers.contract.wire import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, done_key, task_key
from workers.execution.fencing import commit_fence, delivery_fence, refuse_stale
from workers.execution.redaction import redacted
from workers.execution.runtime import WorkerRuntime, _runtime
from workers.lifecycle import Gate
from workers.sealed import SEAL_KWARG, SealedCall, SealedOrigin, open_call

__all__ = ["OutcomeTask", "bury", "settle_writes"]

log = logging.getLogger("taskgate.worker")

# Built once: on Python 3.11 an enum member read off its class costs ~80 ns each time.
_SUCCEEDED: Final = TaskState.SUCCEEDED
_TASK_SUCCEEDED: Final = AuditAction.TASK_SUCCEEDED
_RESULT: Final = Earlier("result")  # the sealed result document, as SET stores it
_STARTED: Final = (TaskState.STARTED, TaskState.STARTED.encode())  # replies: str or bytes


class OutcomeTask(Task[Any, Any]):
    """The outcomes of a taskgate task's run: refused, fenced, revoked while running,
    committed as succeeded, retried, or dead-lettered."""

    abstract = True
    spec: TaskSpec | None = None

    def refuse(self, reason: str, detail: str) -> NoReturn:
        """Audit and log the refusal, then reject the message without requeue."""
        task_id = str(self.request.id)
        log.warning("refused task %s[%s]: %s", self.name, task_id, detail)
        lifecycle_log.note("refused", reason=reason)
        try:
            _runtime(self.app).audit(
                AuditAction.TASK_REFUSED, target=task_id, outcome="denied", reason=reason
            )
        except Exception:  # the refusal stands even when the audit log is unreachable
            log.exception("could not audit the refusal of %s", task_id)
        raise Reject(reason, requeue=False)

    def stopped_at_time_limit(
        self, task_id: str, kwargs: dict[str, Any], fence: tuple[str, str] | None = None
    ) -> bool:
        """In the worker's main process, once the pool process running this task was
        stopped at its hard time limit (``workers.celery_ext.request``): dead-letter the task, still
        sealed, with the reason ``TimeLimitExceeded``. Not retried: the run was killed at
        an unknown point of its body; a requeue from the dead-letter store is the admin's
        call. Returns False, doing nothing, if the run had finished after all (its outcome
        was committed but never reached this process) or was not this task's to finish.
        Raises if Redis cannot be reached: the caller then leaves the message to come back.
        Nothing either if its delivery's ``fence`` no longer holds (``workers.execution.fencing``):
        the delivery was reclaimed, another run owns the task now.
        """
        spec = self.spec
        runtime = _runtime(self.app)
        call = kwargs.get(SEAL_KWARG)
        if isinstance(call, SealedCall):  # the main process holds the call unopened
            try:
                _args, kwargs = open_call(runtime.keys, call)
            except TaskgateError:  # it could not have run: its pool process refuses it
                return False
        origin = kwargs.get(SEAL_KWARG)
        if spec is None or not isinstance(origin, SealedOrigin) or origin.task_id != task_id:
            return False
        client = runtime.client()
        with client.pipeline(transaction=False) as pipe:
            pipe.exists(done_key(task_id))
            pipe.hmget(task_key(task_id), "state", "owner", "attempts")
            pipe.hget(INFLIGHT, fence[0] if fence is not None else "")
            done, (state, owner, attempts), holder = pipe.execute()
        if done or state not in _STARTED:
            return False
        if fence is not None and (holder.decode() if holder else None) != fence[1]:
            log.warning("task %s: stopped at its time limit, but no longer held here", task_id)
            return False
        runtime.metrics.begin(spec.name, spec.queue, received=False)
        return bury(
            runtime,
            spec,
            task_id,
            owner=owner.decode() if isinstance(owner, bytes) else str(owner or ""),
            envelope=origin.envelope,
            payload=kwargs.get("payload"),
            attempt=int(attempts or 1),
            reason=TimeLimitExceeded.__name__,
            marker=origin.marker,
            fence=fence,
        )

    def _fenced(self, task_id: str, reason: str) -> NoReturn:
        """This worker no longer holds the delivery (``workers.execution.fencing``)."""
        refuse_stale(_runtime(self.app), self.name, task_id, reason)

    def _revoked_while_running(self, task_id: str, reason: str) -> NoReturn:
        """Audit a revocation that arrived while the task ran (its record already says
        revoked, its secrets are gone) and end the run: acknowledged, no result stored."""
        log.info("task %s[%s] revoked: %s", self.name, task_id, reason)
        lifecycle_log.note("revoked")
        _runtime(self.app).audit(
            AuditAction.TASK_REVOKED, target=task_id, outcome="ok", reason=reason
        )
        raise Ignore()

    def _commit_success(
        self,
        task_id: str,
        result: Any,
        *,
        vault: list[str],
        attempt: int,
        request: Any,
        marker: tuple[str, str] | None,
        run: int = 0,
    ) -> None:
        """One round trip for the end of a successful run: the ``task.succeeded`` audit
        record, the completion record, the task record, the vault deletion, the sealed
        result (what Celery's Redis backend would write: SET with its expiry, PUBLISH) and
        the message's acknowledgement in one atomic script call; Celery is then told the
        result is stored. Fenced: only while this delivery's ownership token still holds
        it (``workers.liveness``); otherwise nothing is written, the result is discarded
        and the refusal audited (``task.fenced``)."""
        runtime = _runtime(self.app)
        backend: Any = self.backend  # Celery's Redis backend (its stubs list less)
        meta = backend._get_result_meta(  # Celery's own document, sealed by our serializer
            result=backend.encode_result(result, states.SUCCESS),
            state=states.SUCCESS,
            traceback=None,
            request=request,
        )
        meta["task_id"] = task_id
        document = backend.encode(meta)
        key = backend.get_key_for_task(task_id)
        result_key = key.decode() if isinstance(key, bytes) else str(key)
        ttl = str(runtime.record_ttl)
        expiry = ("EX", str(int(backend.expires))) if backend.expires else ()
        writes = [
            Write("SET", (done_key(task_id),), ("1", "EX", ttl)),
            Write(
                "HSET",
                (task_key(task_id),),
                ("state", _SUCCEEDED, "finished_at", f"{time.time():.6f}"),
            ),
            Write("EXPIRE", (task_key(task_id),), (ttl,)),
            Write("SET", (result_key,), (document, *expiry), name="result"),
            Write("PUBLISH", (result_key,), (_RESULT,)),  # the document, sent once
        ]
        if marker is not None:  # the seal's final marker: its bucket exists (the gate saw it)
            bucket, field = marker
            writes.append(Write("HSETNX", (bucket,), (field, _SUCCEEDED)))
        if vault:
            writes.append(Write("DEL", tuple(vault)))
        writes += settle_writes(request)
        fence = delivery_fence(request)
        try:
            runtime.commit(
                _TASK_SUCCEEDED,
                target=task_id,
                outcome="ok",
                reason=f"attempt {attempt}, run {run}" if run else f"attempt {attempt}",
                writes=writes,
                fence=commit_fence(fence),
            )
        except AuditError as exc:
            if exc.reason != "fenced":
                raise
            request.ignore_result = True
            self._fenced(task_id, "commit refused: delivery reclaimed; result discarded")
        request.ignore_result = True  # stored above: Celery's backend writes nothing

    def _after_failure(
        self,
        spec: TaskSpec,
        *,
        payload: Any,
        origin: SealedOrigin,
        gate: Gate,
        attempt: int,
        exc: Exception,
    ) -> None:
        """Retry with backoff if the policy allows; otherwise dead-letter (still sealed).

        A task that refuses its own input (``InputRejectedError``: a pixel bomb, an unsafe
        URL) fails for good instead: replaying the same input can never succeed, so it is
        not dead-lettered and its secrets are deleted at once.
        """
        runtime = _runtime(self.app)
        task_id = str(self.request.id)
        reason = type(exc).__name__  # redacted: the type only, never the message
        policy = spec.retry
        # A run whose delivery was reclaimed meanwhile records no outcome (workers.liveness).
        fence = delivery_fence(self.request)
        stale = "failure not recorded: delivery reclaimed"
        if isinstance(exc, InputRejectedError):
            vault = [vault_key(task_id, ref) for ref in reference_ids(payload)]
            if not runtime.lifecycle().finish(
                task_id,
                TaskState.FAILED,
                ttl=runtime.record_ttl,
                error=reason,
                delete=vault,
                marker=origin.marker,
                fence=fence,
            ):
                self._fenced(task_id, stale)
            runtime.audit(
                AuditAction.TASK_FAILED,
                target=task_id,
                outcome="error",
                reason=f"{reason} (input refused)",
            )
            return
        if isinstance(exc, policy.retry_on) and attempt < policy.max_attempts:
            delay = policy.delay(attempt)
            if not runtime.lifecycle().retried(task_id, reason, delay, fence=fence):
                self._fenced(task_id, stale)
            runtime.audit(
                AuditAction.TASK_RETRIED,
                target=task_id,
                outcome="error",
                reason=f"{reason} attempt {attempt}",
            )
            # Celery re-publishes the original envelope (workers cannot seal new work). It logs
            # and stores the exception it is given: the type's name only, never its message
            # (a TLS error names the URL's host, a task's own text may quote its input).
            raise self.retry(
                exc=redacted(exc), countdown=delay, max_retries=policy.max_attempts - 1
            )
        if not bury(
            runtime,
            spec,
            task_id,
            owner=gate.owner,
            envelope=origin.envelope,
            payload=payload,
            attempt=attempt,
            reason=reason,
            marker=origin.marker,
            fence=fence,
        ):
            self._fenced(task_id, stale)


def bury(
    runtime: WorkerRuntime,
    spec: TaskSpec,
    task_id: str,
    *,
    owner: str,
    envelope: bytes,
    payload: Any,
    attempt: int,
    reason: str,
    detail: str = "",
    marker: tuple[str, str] | None = None,
    fence: tuple[str, str] | None = None,
) -> bool:
    """Dead-letter the task, still sealed, with its secrets kept for a requeue; record it
    ``dead_lettered`` with the redacted ``reason``; audit it. With a ``fence``: only while
    this run holds its delivery (checked in the dead letter's own script); False, with
    nothing written, if it no longer does."""
    if not dead_letter(
        runtime.client(),
        task_id=task_id,
        name=spec.name,
        queue=spec.queue,
        owner=owner,
        envelope=envelope,
        attempts=attempt,
        reason=reason,
        vault_keys=[vault_key(task_id, ref) for ref in reference_ids(payload)],
        fence=fence,
    ):
        return False
    lifecycle_log.note("dead_lettered", failure_type=reason)
    if not runtime.lifecycle().finish(
        task_id,
        TaskState.DEAD_LETTERED,
        ttl=runtime.record_ttl,
        error=reason,
        marker=marker,
        fence=fence,
    ):  # reclaimed between the two scripts: the dead letter stands, the new holder decides
        log.warning("task %s: dead-lettered, but its delivery was reclaimed meanwhile", task_id)
    runtime.audit(
        AuditAction.TASK_DEAD_LETTERED,
        target=task_id,
        outcome="error",
        reason=f"{reason} after {detail or attempt}",
    )
    return True


def settle_writes(request: Any) -> list[Write]:
    """Acknowledge this delivery in Redis (kombu's unacked hash and index) as part of the
    success commit; the main process then only frees its slot (``workers.celery_ext.request``)."""
    tag = getattr(request, DELIVERY_TAG, None)
    if not isinstance(tag, str) or not tag:
        return []
    return [
        Write("ZREM", (KOMBU_UNACKED_INDEX,), (tag,)),
        Write("HDEL", (KOMBU_UNACKED,), (tag,)),
        Write("HDEL", (INFLIGHT,), (tag,)),
    ]
