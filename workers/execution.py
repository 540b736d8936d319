"""Running declared tasks: open the seal, check its binding, resolve secrets, validate, run.

Every task on a taskgate worker uses :class:`SealedTask` as its base. Before the
task body runs:

1. the envelope the worker's main process passed on unopened is opened here, in the pool
   process (``workers.sealed.unseal_call``: decryption under the broker key, whose AEAD tag
   authenticates it; refused if that fails), and must be bound to *this* message's task
   id and name;
2. the start gate is sent (``Lifecycle.send_gate``) and, while Redis runs it, the
   gateway's Ed25519 signature is checked; a bad signature is refused before anything
   else happens. Until then only a holder of a broker key can have made the envelope - the
   gateway, or a worker, which holds a Redis client certificate and so could write the
   gate's bookkeeping itself - and nothing it refers to is acted on beyond that
   bookkeeping: no secret is decrypted, no task code runs. (Checked first, the signature
   kept the script waiting: 0.1 ms of CPU on every task's path.)
3. secret references are resolved from the vault, just in time, as ``SecretStr``;
4. the payload is validated again against the declared schema (defence in depth).

A success is committed in one atomic script call: completion record, task record, sealed
result, vault deletion, the ``task.succeeded`` audit record and the acknowledgement of
the message itself (``workers.request``: the main process then only frees its slot).
A refusal is audited, logged without payload, and the message is rejected without
requeue (acknowledged: no redelivery loop). Secrets are deleted once the task is
finished for good (success, or a failure that will not be retried). If Redis itself is
unreachable while the worker records progress, the message is requeued, never failed.
A task declared ``cancellable`` that is cancelled while it runs is stopped in its body
(``workers.cancel``) and ends revoked: never retried, dead-lettered or recorded succeeded.
A task goes to the dead letters, still sealed with its secrets kept (``_bury``), when its
retry policy is spent, when its run is stopped at the hard time limit (decided in the
worker's main process: ``stopped_at_time_limit``, called by ``workers.request``), or when
``max_runs`` runs of one attempt were all cut off (counted by the start gate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from celery import Celery, Task, states
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from pydantic import ValidationError

from security.audit import Earlier, Write
from security.errors import AuditError, InputRejectedError, TaskgateError
from security.vault import reference_ids, resolve_secrets, vault_key
from workers import cancel, lifecycle_log
from workers.catalogue import Catalogue, TaskSpec
from workers.contract.keys import INFLIGHT
from workers.deadletters import dead_letter
from workers.fencing import commit_fence, delivery_fence, refuse_stale, still_held
from workers.lifecycle import Gate, GateCall
from workers.metrics import queued_since
from workers.redaction import redacted
from workers.request import DELIVERY_TAG, GATE_DELIVERY
from workers.runtime import (
    WorkerRuntime,
    _requeue_if_storage_down,
    _runtime,
)
from workers.sealed import (
    SEAL_KWARG,
    SealedCall,
    SealedOrigin,
    UnverifiedCall,
    open_call,
    unseal_call,
)
from workers.wire import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, done_key, revoked_key, task_key

__all__ = ["SealedTask", "register_catalogue"]

log = logging.getLogger("taskgate.worker")


class SealedTask(Task[Any, Any]):
    """Base of every taskgate task: refuses calls that did not come sealed for it."""

    abstract = True
    spec: TaskSpec | None = None
    typing = False  # the seal marker travels in kwargs; the run signature is ours
    # Celery sends the main process a repr of every return value, for its log line and
    # events (taskgate shows it in neither): a result is sealed, so none is made.
    resultrepr_maxsize = 0
    Request = "workers.request:SealedRequest"  # the body is opened once (main process)

    def refuse(self, reason: str, detail: str) -> NoReturn:
        """Audit and log the refusal, then reject the message without requeue."""
        task_id = str(self.request.id)
        log.warning("refused task %s[%s]: %s", self.name, task_id, detail)
        lifecycle_log.note("refused", reason=reason)
        try:
            _runtime(self.app).audit(
                "task.refused", target=task_id, outcome="denied", reason=reason
            )
        except Exception:  # the refusal stands even when the audit log is unreachable
            log.exception("could not audit the refusal of %s", task_id)
        raise Reject(reason, requeue=False)

    def stopped_at_time_limit(
        self, task_id: str, kwargs: dict[str, Any], fence: tuple[str, str] | None = None
    ) -> bool:
        """In the worker's main process, once the pool process running this task was
        stopped at its hard time limit (``workers.request``): dead-letter the task, still
        sealed, with the reason ``TimeLimitExceeded``. Not retried: the run was killed at
        an unknown point of its body; a requeue from the dead-letter store is the admin's
        call. Returns False, doing nothing, if the run had finished after all (its outcome
        was committed but never reached this process) or was not this task's to finish.
        Raises if Redis cannot be reached: the caller then leaves the message to come back.
        Nothing either if its delivery's ``fence`` no longer holds (``workers.fencing``):
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
        if done or state not in (b"started", "started"):
            return False
        if fence is not None and (holder.decode() if holder else None) != fence[1]:
            log.warning("task %s: stopped at its time limit, but no longer held here", task_id)
            return False
        runtime.metrics.begin(spec.name, spec.queue, received=False)
        _bury(
            runtime,
            spec,
            task_id,
            owner=owner.decode() if isinstance(owner, bytes) else str(owner or ""),
            envelope=origin.envelope,
            payload=kwargs.get("payload"),
            attempt=int(attempts or 1),
            reason=TimeLimitExceeded.__name__,
            marker=origin.marker,
        )
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # SIGUSR1 (soft time limit, or a cancellation) may interrupt a cancellable task's
        # body only, never its bookkeeping (workers.cancel).
        cancel.task_starts(cancellable=self.spec is not None and self.spec.cancellable)
        if self.spec is not None:
            _runtime(self.app).metrics.begin(self.spec.name, self.spec.queue)
        try:
            return self._checked_call(*args, **kwargs)
        finally:
            cancel.task_ends()

    def _checked_call(self, *args: Any, **kwargs: Any) -> Any:
        call = kwargs.get(SEAL_KWARG)
        if not (isinstance(call, SealedCall) and not args and len(kwargs) == 1):
            return self._bound_call(args, kwargs, None)
        # Opened here, in the pool process, not by the main process (workers.sealed).
        try:
            unverified = unseal_call(_runtime(self.app).keys, call)
        except TaskgateError as exc:  # SealError, KeyRetiredError: .reason says which
            self.refuse(exc.reason, "the sealed body failed to open")
        gate = self._send_gate(unverified)
        try:
            try:
                unverified.verify()  # while Redis runs the gate (see the module docstring)
            except TaskgateError as exc:
                if gate is not None:
                    gate.abandon()  # its reply is read before refuse() audits
                self.refuse(exc.reason, "the sealed body failed to open")
            return self._bound_call(tuple(unverified.args), unverified.kwargs, gate)
        finally:
            if gate is not None:
                gate.abandon()  # nothing if the run read it; else never leave it unread

    def _send_gate(self, unverified: UnverifiedCall) -> GateCall | None:
        """The start gate of a declared task's call bound to this message, sent ahead; None
        for anything else (refused below, or a built-in task)."""
        origin = unverified.kwargs.get(SEAL_KWARG)
        request = self.request
        if (
            self.spec is None
            or not isinstance(origin, SealedOrigin)
            or origin.task_id != request.id
            or origin.task_name != self.name
        ):
            return None
        runtime = _runtime(self.app)
        task_id = origin.task_id
        payload = unverified.kwargs.get("payload")
        with _requeue_if_storage_down(task_id):
            return runtime.lifecycle().send_gate(
                task_id,
                int(request.retries or 0) + 1,
                vault=[vault_key(task_id, ref) for ref in reference_ids(payload)],
                max_runs=runtime.max_runs,
                delivery=getattr(request, GATE_DELIVERY, None) or (),
                marker=origin.marker,
                fence=delivery_fence(request),
            )

    def _bound_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], gate: GateCall | None
    ) -> Any:
        """The call checked against this message (refused unless the envelope is bound to
        it), then run."""
        origin = kwargs.pop(SEAL_KWARG, None)
        if not isinstance(origin, SealedOrigin):
            self.refuse("not_sealed", "the call did not come from a sealed envelope")
        request = self.request  # a lookup in Celery's request stack each time: once here
        if origin.task_id != request.id or origin.task_name != self.name:
            reason = "task_id_mismatch" if origin.task_id != request.id else "task_name_mismatch"
            self.refuse(reason, "the envelope is bound to another task")
        if self.spec is None:  # built-in tasks (system.ping) take no payload
            return self.run(*args, **kwargs)
        return self._run_declared(self.spec, kwargs.get("payload"), origin, request, gate)

    def _run_declared(
        self,
        spec: TaskSpec,
        payload: Any,
        origin: SealedOrigin,
        request: Any,
        sent: GateCall | None,
    ) -> Any:
        runtime = _runtime(self.app)
        task_id = str(request.id)
        attempt = int(request.retries or 0) + 1
        vault = [vault_key(task_id, ref) for ref in reference_ids(payload)]
        with _requeue_if_storage_down(task_id):
            delivery = getattr(request, GATE_DELIVERY, None) or ()
            gate, model = self._admit(
                spec,
                payload,
                origin,
                attempt,
                vault,
                delivery=delivery,
                fence=delivery_fence(request),
                sent=sent,
            )
        runtime.metrics.started(queued_since(origin.issued_at, request.eta, time.time()))
        lifecycle_log.admitted(self, origin.issued_at)
        try:
            if spec.cancellable:
                with cancel.interruptible():
                    result = spec.fn(model)
            else:
                result = spec.fn(model)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:  # noqa: BLE001 - the task's own failure: recorded, re-raised redacted
            with _requeue_if_storage_down(task_id):
                # Cancelled while running (stopped, or failing anyway): revoked, never
                # retried or dead-lettered.
                if spec.cancellable and runtime.client().exists(revoked_key(task_id)):
                    runtime.lifecycle().finish(
                        task_id,
                        "revoked",
                        ttl=runtime.record_ttl,
                        delete=vault,
                        marker=origin.marker,
                    )
                    self._revoked_while_running(task_id, "terminated while running")
                self._after_failure(
                    spec, payload=payload, origin=origin, gate=gate, attempt=attempt, exc=exc
                )
            raise redacted(exc) from None
        with _requeue_if_storage_down(task_id):
            if not spec.cancellable:
                self._commit_success(
                    task_id,
                    result,
                    vault=vault,
                    attempt=attempt,
                    request=request,
                    marker=origin.marker if gate.marker_ready else None,
                    run=gate.run_count,
                )
                return result
            fence = delivery_fence(request)
            try:
                finished = cancel.finish_unless_revoked(
                    runtime.client(),
                    task_id,
                    ttl=runtime.record_ttl,
                    delete=vault,
                    marker=origin.marker,
                    fence=fence,
                )
            except cancel.NotHeldError:
                self._fenced(task_id, "commit refused: delivery reclaimed; result discarded")
            if not finished:
                # The revocation reached Redis first: never "succeeded" after a cancel.
                self._revoked_while_running(task_id, "revoked while running; it ended first")
        try:
            runtime.commit(
                "task.succeeded",
                target=task_id,
                outcome="ok",
                reason=f"attempt {attempt}, run {gate.run_count}",
                writes=_settle_writes(request),
                fence=commit_fence(fence),
            )
        except AuditError as exc:
            if exc.reason != "fenced":
                raise
            self._fenced(task_id, "commit refused: delivery reclaimed; result discarded")
        return result

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
                ("state", "succeeded", "finished_at", f"{time.time():.6f}"),
            ),
            Write("EXPIRE", (task_key(task_id),), (ttl,)),
            Write("SET", (result_key,), (document, *expiry)),
            Write("PUBLISH", (result_key,), (Earlier(3, 0),)),  # the document, sent once
        ]
        if marker is not None:  # the seal's final marker: its bucket exists (the gate saw it)
            bucket, field = marker
            writes.append(Write("HSETNX", (bucket,), (field, "succeeded")))
        if vault:
            writes.append(Write("DEL", tuple(vault)))
        writes += _settle_writes(request)
        fence = delivery_fence(request)
        try:
            runtime.commit(
                "task.succeeded",
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

    def _admit(
        self,
        spec: TaskSpec,
        payload: Any,
        origin: SealedOrigin,
        attempt: int,
        vault: list[str],
        *,
        delivery: Sequence[str],
        fence: tuple[str, str] | None = None,
        sent: GateCall | None,
    ) -> tuple[Gate, Any]:
        """The start gate (records the delivery in flight if the consumer left that to it;
        revoked? already done? interrupted too often? else started), then the payload with
        its secrets resolved, validated again against the task's schema. ``sent``: the
        gate sent ahead by ``_checked_call`` (its reply read here), else sent now."""
        runtime = _runtime(self.app)
        life = runtime.lifecycle()
        task_id = origin.task_id  # checked equal to this request's id by _bound_call
        if sent is not None:
            gate = sent.result()
        else:
            gate = life.open_gate(
                task_id,
                attempt,
                vault=vault,
                max_runs=runtime.max_runs,
                delivery=delivery,
                marker=origin.marker,
                fence=fence,
            )
        if not gate.held:
            self._fenced(task_id, "start refused: delivery reclaimed")
        if delivery and not gate.recorded:
            # Its copy was gone: another delivery of the same message took it first.
            log.warning("task %s[%s]: delivery not recorded: no copy", self.name, task_id)
        runtime.observe_audit_head(gate.audit_head)
        if gate.done:
            log.info("task %s[%s] already finished; redelivery acknowledged", self.name, task_id)
            raise Ignore()
        if gate.revoked:
            life.finish(
                task_id, "revoked", ttl=runtime.record_ttl, delete=vault, marker=origin.marker
            )
            runtime.audit(
                "task.revoked", target=task_id, outcome="ok", reason="revoked before start"
            )
            lifecycle_log.note("revoked")
            raise Ignore()
        if gate.ended:
            # Its seal's final marker is set: a run of this very message already ended for
            # good. Whatever else was deleted (tg:done, the revocation), it never runs again.
            log.info("task %s[%s] already finished; redelivery acknowledged", self.name, task_id)
            raise Ignore()
        if gate.too_many_runs:
            # Every earlier run of this attempt was cut off: its process killed (a crash the
            # task itself causes?), the worker lost, Redis gone mid-run. Not started again.
            log.error(
                "task %s[%s]: attempt %d interrupted %d times; dead-lettered, not run again",
                self.name,
                task_id,
                attempt,
                gate.runs - 1,
            )
            _bury(
                runtime,
                spec,
                task_id,
                owner=gate.owner,
                envelope=origin.envelope,
                payload=payload,
                attempt=attempt,
                reason="InterruptedRuns",
                detail=f"{gate.runs - 1} interrupted runs of attempt {attempt}",
                marker=origin.marker,
            )
            raise Ignore()
        if gate.runs > 1:  # the runs before were cut off: each is recorded, once
            runtime.audit(
                "task.run_interrupted",
                target=task_id,
                outcome="error",
                reason=f"run {gate.run_count - 1} cut off; run {gate.run_count} starts",
            )
        if not isinstance(payload, dict):
            self.refuse("bad_payload", "payload is not an object")
        try:
            resolved = resolve_secrets(
                payload,
                task_id=task_id,
                keys=runtime.keys.vault,
                client=runtime.client(),
                blobs=gate.blobs,  # fetched by the gate script, same round trip
            )
            return gate, spec.schema.model_validate(resolved)
        except TaskgateError as exc:
            life.finish(
                task_id,
                "failed",
                ttl=runtime.record_ttl,
                error=exc.reason,
                delete=vault,
                marker=origin.marker,
            )
            self.refuse(exc.reason, str(exc))
        except ValidationError as exc:
            life.finish(
                task_id,
                "failed",
                ttl=runtime.record_ttl,
                error="invalid_payload",
                delete=vault,
                marker=origin.marker,
            )
            fields = ",".join(".".join(map(str, e["loc"])) for e in exc.errors()[:5])
            self.refuse("invalid_payload", f"payload failed validation at {fields}")

    def _fenced(self, task_id: str, reason: str) -> NoReturn:
        """This worker no longer holds the delivery (``workers.fencing``)."""
        refuse_stale(_runtime(self.app), self.name, task_id, reason)

    def _revoked_while_running(self, task_id: str, reason: str) -> NoReturn:
        """Audit a revocation that arrived while the task ran (its record already says
        revoked, its secrets are gone) and end the run: acknowledged, no result stored."""
        log.info("task %s[%s] revoked: %s", self.name, task_id, reason)
        lifecycle_log.note("revoked")
        _runtime(self.app).audit("task.revoked", target=task_id, outcome="ok", reason=reason)
        raise Ignore()

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
                "failed",
                ttl=runtime.record_ttl,
                error=reason,
                delete=vault,
                marker=origin.marker,
                fence=fence,
            ):
                self._fenced(task_id, stale)
            runtime.audit(
                "task.failed", target=task_id, outcome="error", reason=f"{reason} (input refused)"
            )
            return
        if isinstance(exc, policy.retry_on) and attempt < policy.max_attempts:
            delay = policy.delay(attempt)
            if not runtime.lifecycle().retried(task_id, reason, delay, fence=fence):
                self._fenced(task_id, stale)
            runtime.audit(
                "task.retried",
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
        if fence is not None and not still_held(runtime.client(), fence):
            self._fenced(task_id, stale)
        _bury(
            runtime,
            spec,
            task_id,
            owner=gate.owner,
            envelope=origin.envelope,
            payload=payload,
            attempt=attempt,
            reason=reason,
            marker=origin.marker,
        )


def _bury(
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
) -> None:
    """Dead-letter the task, still sealed, with its secrets kept for a requeue; record it
    ``dead_lettered`` with the redacted ``reason``; audit it."""
    lifecycle_log.note("dead_lettered", failure_type=reason)
    dead_letter(
        runtime.client(),
        task_id=task_id,
        name=spec.name,
        queue=spec.queue,
        owner=owner,
        envelope=envelope,
        attempts=attempt,
        reason=reason,
        vault_keys=[vault_key(task_id, ref) for ref in reference_ids(payload)],
    )
    runtime.lifecycle().finish(
        task_id, "dead_lettered", ttl=runtime.record_ttl, error=reason, marker=marker
    )
    runtime.audit(
        "task.dead_lettered",
        target=task_id,
        outcome="error",
        reason=f"{reason} after {detail or attempt}",
    )


def _settle_writes(request: Any) -> list[Write]:
    """Acknowledge this delivery in Redis (kombu's unacked hash and index) as part of the
    success commit; the main process then only frees its slot (``workers.request``)."""
    tag = getattr(request, DELIVERY_TAG, None)
    if not isinstance(tag, str) or not tag:
        return []
    return [
        Write("ZREM", (KOMBU_UNACKED_INDEX,), (tag,)),
        Write("HDEL", (KOMBU_UNACKED,), (tag,)),
        Write("HDEL", (INFLIGHT,), (tag,)),
    ]


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
