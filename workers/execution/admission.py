"""Admitting a sealed task's run: the start gate's verdict, then its payload made ready.

:class:`AdmittingTask` sits between :class:`workers.execution.outcomes.OutcomeTask` and
:class:`workers.execution.task.SealedTask`. Its one step, ``_admit``, reads the start gate
(``workers.lifecycle``): a run whose delivery was reclaimed is fenced off; a task already
done, revoked or ended for good is acknowledged without running; one interrupted too often
is dead-lettered. Only then are the payload's secret references resolved from the vault,
just in time, and the payload validated again against the declared schema.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery.exceptions import Ignore
from pydantic import ValidationError

from security.audit.actions import AuditAction
from security.errors import TaskgateError
from security.vault import resolve_secrets
from workers import lifecycle_log
from workers.contract.catalogue import TaskSpec
from workers.contract.states import TaskState
from workers.execution.outcomes import OutcomeTask, bury
from workers.execution.runtime import _runtime
from workers.lifecycle import Gate, GateCall
from workers.sealed import SealedOrigin

__all__ = ["AdmittingTask"]

log = logging.getLogger("taskgate.worker")


class AdmittingTask(OutcomeTask):
    """A task that admits a run only past its start gate, with its payload resolved."""

    abstract = True

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
            self._finish_held(task_id, TaskState.REVOKED, vault, origin, fence)
            runtime.audit(
                AuditAction.TASK_REVOKED,
                target=task_id,
                outcome="ok",
                reason="revoked before start",
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
            if not bury(
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
                fence=fence,
            ):
                self._fenced(task_id, "dead letter refused: delivery reclaimed")
            raise Ignore()
        if gate.runs > 1:  # the runs before were cut off: each is recorded, once
            runtime.audit(
                AuditAction.TASK_RUN_INTERRUPTED,
                target=task_id,
                outcome="error",
                reason=f"run {gate.run_count - 1} cut off; run {gate.run_count} starts",
            )
        return gate, self._resolved(spec, payload, gate, origin, vault=vault, fence=fence)

    def _resolved(
        self,
        spec: TaskSpec,
        payload: Any,
        gate: Gate,
        origin: SealedOrigin,
        *,
        vault: list[str],
        fence: tuple[str, str] | None,
    ) -> Any:
        """The payload with its secrets resolved, validated against the task's schema; a
        payload that fails either is recorded failed and refused."""
        if not isinstance(payload, dict):
            self.refuse("bad_payload", "payload is not an object")
        runtime = _runtime(self.app)
        task_id = origin.task_id
        try:
            resolved = resolve_secrets(
                payload,
                task_id=task_id,
                keys=runtime.keys.vault,
                client=runtime.client(),
                blobs=gate.blobs,  # fetched by the gate script, same round trip
            )
            return spec.schema.model_validate(resolved)
        except TaskgateError as exc:
            self._finish_held(task_id, TaskState.FAILED, vault, origin, fence, error=exc.reason)
            self.refuse(exc.reason, str(exc))
        except ValidationError as exc:
            self._finish_held(
                task_id, TaskState.FAILED, vault, origin, fence, error="invalid_payload"
            )
            fields = ",".join(".".join(map(str, e["loc"])) for e in exc.errors()[:5])
            self.refuse("invalid_payload", f"payload failed validation at {fields}")

    def _finish_held(
        self,
        task_id: str,
        state: TaskState,
        vault: list[str],
        origin: SealedOrigin,
        fence: tuple[str, str] | None,
        *,
        error: str = "",
    ) -> None:
        """Record the run's final ``state`` while this run still holds its delivery; end
        the run as fenced (nothing written) if it no longer does."""
        runtime = _runtime(self.app)
        if not runtime.lifecycle().finish(
            task_id,
            state,
            ttl=runtime.record_ttl,
            error=error,
            delete=vault,
            marker=origin.marker,
            fence=fence,
        ):
            self._fenced(task_id, f"{state} not recorded: delivery reclaimed")
