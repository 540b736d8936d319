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

If Redis itself is unreachable while the worker records progress, the message is
requeued, never failed. A task declared ``cancellable`` that is cancelled while it runs is
stopped in its body (``workers.execution.cancel``) and ends revoked: never retried, dead-lettered or
recorded succeeded. How a run's end is recorded - the success commit, a refusal, a retry,
the dead letters (``workers.execution.outcomes.bury``) - is
:class:`workers.execution.outcomes.OutcomeTask`;
the start gate's verdict and the payload's resolution are
:class:`workers.execution.admission.AdmittingTask`, the base of :class:`SealedTask`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import Ignore, Reject, Retry

from security.audit.actions import AuditAction
from security.errors import AuditError, TaskgateError
from security.vault import reference_ids, vault_key
from workers import lifecycle_log
from workers.celery_ext.request import GATE_DELIVERY
from workers.contract.catalogue import TaskSpec
from workers.contract.states import TaskState
from workers.contract.wire import revoked_key
from workers.execution import cancel
from workers.execution.admission import AdmittingTask
from workers.execution.fencing import commit_fence, delivery_fence
from workers.execution.outcomes import settle_writes
from workers.execution.redaction import redacted
from workers.execution.runtime import _requeue_if_storage_down, _runtime
from workers.lifecycle import GateCall
from workers.metrics import queued_since
from workers.sealed import (
    SEAL_KWARG,
    SealedCall,
    SealedOrigin,
    UnverifiedCall,
    unseal_call,
)

__all__ = ["SealedTask"]

log = logging.getLogger("taskgate.worker")


class SealedTask(AdmittingTask):
    """Base of every taskgate task: refuses calls that did not come sealed for it."""

    abstract = True
    typing = False  # the seal marker travels in kwargs; the run signature is ours
    # Celery sends the main process a repr of every return value, for its log line and
    # events (taskgate shows it in neither): a result is sealed, so none is made.
    resultrepr_maxsize = 0
    Request = "workers.celery_ext.request:SealedRequest"  # the body is opened once (main process)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # SIGUSR1 (soft time limit, or a cancellation) may interrupt a cancellable task's
        # body only, never its bookkeeping (workers.execution.cancel).
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
                    if not runtime.lifecycle().finish(
                        task_id,
                        TaskState.REVOKED,
                        ttl=runtime.record_ttl,
                        delete=vault,
                        marker=origin.marker,
                        fence=delivery_fence(request),
                    ):
                        self._fenced(task_id, "revocation not recorded: delivery reclaimed")
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
                AuditAction.TASK_SUCCEEDED,
                target=task_id,
                outcome="ok",
                reason=f"attempt {attempt}, run {gate.run_count}",
                writes=settle_writes(request),
                fence=commit_fence(fence),
            )
        except AuditError as exc:
            if exc.reason != "fenced":
                raise
            self._fenced(task_id, "commit refused: delivery reclaimed; result discarded")
        return result
