"""The request class of every taskgate task: a sealed body is decoded once, not twice,
and a declared task's success acknowledges its message in the same write as its result.

Decoded once: Celery's worker decodes a protocol-2 body in its main process (the strategy
looks for ``args`` in ``message.payload``, and ``Request`` reads the arguments from it),
then sends the *raw* body to the pool process, which decodes it again. Here the main
process's decode is the only one, and a cheap one: it refuses a body that is not an
envelope and passes the envelope on unopened (``workers.sealed.SealedCall``). The pool
receives that call, as Celery does for messages it decoded itself (protocol 1), and opens
it - signature, decryption - before anything else (``workers.execution.task``), so the one
thread that receives every message does no cryptography. Nothing new crosses the pipe:
Celery already sends the decoded arguments to the pool inside the request dict; the raw
body no longer goes along.

Recorded by the gate: for a delivery the consumer left to the start gate to record in
flight (``workers.celery_ext.transport.recorded_by_gate``), the request dict carries its tag,
exchange
and routing key to the pool (:data:`GATE_DELIVERY`), where the gate records it from the
gateway's copy of the message (``workers.lifecycle``).

Settled by the task: the request dict carries the message's delivery tag to the pool, and
a declared task's success commit - completion record, result, audit record - also removes
the delivery from kombu's ``unacked`` hash and index, atomically (``workers.execution.task``).
When the pool reports that the task returned, the main process's ack only frees the
prefetch slot (``workers.celery_ext.transport``) instead of a second round trip to Redis. Every
other
outcome (retry, failure, dead letter, refusal, revocation, a lost worker) is acknowledged
or rejected by the main process as before. If a task returned without its commit having
acknowledged (Celery reporting an internal error as a return), the delivery stays in the
``unacked`` hash and comes back after the visibility timeout, where the completion record
decides: delayed, never lost.

Stopped at the hard time limit: the pool process is killed mid-run, so nothing in it
records the outcome, and Celery would acknowledge the message and store a FAILURE - the
task's own record still saying started, for ever. Here the main process dead-letters the
task instead (``SealedTask.stopped_at_time_limit``) unless its run had in fact finished,
and acknowledges only once that is recorded; if Redis cannot be reached the message is
put back.
"""

from __future__ import annotations

import logging
import re
import weakref
from functools import partial
from typing import Any

from celery.exceptions import TimeLimitExceeded
from celery.worker import state
from celery.worker.request import Request

from workers import lifecycle_log
from workers.celery_ext.transport import QoS, recorded_by_gate
from workers.contract.wire import TASK_CONTENT_TYPE
from workers.sentry_setup import report_time_limit

__all__ = [
    "DELIVERY_TAG",
    "DELIVERY_TOKEN",
    "GATE_DELIVERY",
    "SEALED",
    "SealedRequest",
    "settles_on_success",
]

log = logging.getLogger("taskgate.worker")

DELIVERY_TAG = "taskgate_delivery_tag"  # request dict field -> ``task.request`` attribute
# [tag, exchange, routing key] of a delivery the consumer left to the start gate to record
# (``workers.celery_ext.transport.recorded_by_gate``), else None: request dict field -> attribute.
GATE_DELIVERY = "taskgate_gate_delivery"
# This delivery's ownership token (``workers.liveness``): the start gate and the success
# commit go ahead only while it still holds the delivery. Request dict field -> attribute.
DELIVERY_TOKEN = "taskgate_delivery_token"  # noqa: S105 - a field name, no secret


def settles_on_success(task: Any) -> bool:
    """Does ``task``'s success commit acknowledge its own delivery? (Declared tasks with
    late acks; ``system.ping`` is acknowledged on receipt and commits nothing.)"""
    return getattr(task, "spec", None) is not None and bool(getattr(task, "acks_late", False))


class SealedRequest(Request):
    """A request whose sealed body reaches the pool already opened, and whose Celery
    events (``TASKGATE_TASK_EVENTS``) carry placeholders instead of values."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        self._returned = False
        # celery-types does not declare Request's private attributes.
        me: Any = self
        if me._decoded or me._content_type != TASK_CONTENT_TYPE:
            return
        # Always set: a retry's message carries the custom fields of the request it came from.
        me._request_dict[GATE_DELIVERY] = _gate_delivery(message)
        qos = getattr(getattr(message, "channel", None), "qos", None)
        me._request_dict[DELIVERY_TOKEN] = (
            qos.token_for(message.delivery_tag) if isinstance(qos, QoS) else None
        )
        # The decoded (args, kwargs, embed) Celery holds already: what fast_trace_task runs
        # when it is given no content type.
        me._body = me._payload
        me._content_type = me._content_encoding = None
        me._decoded = True
        if settles_on_success(self.task):
            me._request_dict[DELIVERY_TAG] = message.delivery_tag
            # What execute_using_pool hands the pool: the handler create_request_cls
            # generated, noting first whether the task returned. A weak reference, so the
            # request does not keep itself alive through its own attribute.
            me.on_success = partial(_note_return, weakref.ref(self), type(self).on_success)

    @property
    def argsrepr(self) -> str:
        """What ``task-received`` events (Flower) show as arguments, whatever the message
        says (a message need not come from the gateway to be received)."""
        return SEALED

    @property
    def kwargsrepr(self) -> str:
        return SEALED

    def send_event(self, type: str, **fields: Any) -> None:
        """A task event without values: a result becomes :data:`SEALED`, an exception its
        type's name (it is already a redacted stand-in: ``workers.execution.redaction``), no
        traceback text; ``task-started`` names the queue."""
        if "result" in fields:
            fields["result"] = SEALED
        if "exception" in fields:
            fields["exception"] = _type_name(fields["exception"])
        if "traceback" in fields:
            fields["traceback"] = ""
        for name in ("args", "kwargs"):
            if name in fields:
                fields[name] = SEALED
        if type == "task-started":  # received events say no queue; Flower shows this one
            info = self.delivery_info or {}
            fields.setdefault("routing_key", info.get("routing_key"))
        super().send_event(type, **fields)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # billiard's ExceptionWithTraceback wrapper
        if isinstance(exc, TimeLimitExceeded) and self._ours_to_settle():
            self._stopped_at_time_limit()
            return
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        # billiard reports a hard time limit to on_failure first (above); Celery's handler
        # here would then store a FAILURE over whatever the task committed.
        if soft or not self._ours_to_settle():
            super().on_timeout(soft, timeout)

    def _ours_to_settle(self) -> bool:
        stopped = getattr(self.task, "stopped_at_time_limit", None)
        return callable(stopped) and settles_on_success(self.task) and not state.should_terminate

    def _stopped_at_time_limit(self) -> None:
        """The pool process was killed at the task's hard time limit: the task is
        dead-lettered (``SealedTask.stopped_at_time_limit``) and its message acknowledged.
        If that cannot be recorded (Redis unreachable), the message is put back instead -
        never acknowledged with the task still marked started."""
        state.task_ready(self)
        log.error("hard time limit exceeded for %s[%s]; its run was stopped", self.name, self.id)
        report_time_limit(self.name, self.time_limits[0] or getattr(self.task, "time_limit", None))
        task: Any = self.task  # a SealedTask (checked by _ours_to_settle)
        try:
            if task.stopped_at_time_limit(self.id, self.kwargs, _fence_of(self)):
                lifecycle_log.ended_in_main_process(self, "dead_lettered", "TimeLimitExceeded")
                self.send_event("task-failed", exception="TimeLimitExceeded", traceback="")
        except Exception as exc:  # noqa: BLE001 - any failure: leave the message to come back
            log.warning(
                "task %s: could not dead-letter it after its time limit (%s); message put back",
                self.id,
                type(exc).__name__,
            )
            self.reject(requeue=True)
            return
        self.acknowledge()

    def acknowledge(self) -> None:
        message: Any = self.message
        if self._returned and not self.acknowledged:
            qos = getattr(getattr(message, "channel", None), "qos", None)
            if isinstance(qos, QoS):
                qos.settled_by_task(message.delivery_tag)
        super().acknowledge()


SEALED = "(sealed)"
_REPR_TYPE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\(")


def _type_name(exception: Any) -> str:
    """The exception's type from what Celery puts in an event: ``safe_repr`` of the
    exception (``"ValueError('ValueError')"``) - the name before the parenthesis only."""
    if isinstance(exception, BaseException):
        return type(exception).__name__
    if str(exception).isidentifier():  # already a type's name
        return str(exception)
    match = _REPR_TYPE.match(str(exception))
    return match.group(1).rsplit(".", 1)[-1] if match else "Error"


def _fence_of(request: SealedRequest) -> tuple[str, str] | None:
    """(tag, ownership token) of the request's delivery, as its run carries them."""
    fields: Any = request.request_dict
    tag, token = fields.get(DELIVERY_TAG), fields.get(DELIVERY_TOKEN)
    return (tag, token) if isinstance(tag, str) and isinstance(token, str) else None


def _gate_delivery(message: Any) -> list[str] | None:
    if not recorded_by_gate(message):
        return None
    info = message.delivery_info or {}
    return [
        str(message.delivery_tag),
        str(info.get("exchange") or ""),
        str(info.get("routing_key") or ""),
    ]


def _note_return(
    ref: weakref.ref[SealedRequest], reported: Any, failed__retval__runtime: Any, **options: Any
) -> Any:
    request = ref()
    if request is None:  # pragma: no cover - Celery holds the request until it is ready
        return None
    request._returned = not failed__retval__runtime[0]
    return reported(request, failed__retval__runtime, **options)
