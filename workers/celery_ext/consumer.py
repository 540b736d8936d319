"""A Celery consumer that refuses bad messages without logging their bodies, and audits.

Celery's stock handlers log up to 1 KiB of a refused message body; here a refused
message is described by its routing metadata and the refusal reason only, the refusal
goes to the audit chain, and the message is acknowledged or rejected without requeue
(never redelivered in a loop).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from kombu.message import Message

from security.audit.actions import AuditAction
from security.errors import TaskgateError
from workers import lifecycle_log
from workers.execution.runtime import WorkerRuntime

__all__ = ["AuditingConsumer", "refusal_reason"]

log = logging.getLogger("taskgate.worker")


def refusal_reason(exc: BaseException | None) -> str:
    """The stable reason code behind a kombu/Celery decode error, if it is ours."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TaskgateError):
            return current.reason
        nested = current.args[0] if current.args else None
        current = nested if isinstance(nested, BaseException) else current.__cause__
    if exc is not None and type(exc).__name__ == "ContentDisallowed":
        return "not_sealed"
    return "undecodable"


def _headers(message: Message) -> tuple[str, str]:
    headers = message.headers if isinstance(message.headers, dict) else {}
    return str(headers.get("id", "?"))[:64], str(headers.get("task", "?"))[:100]


class AuditingConsumer(Consumer):
    """The stock consumer, with refusals that are audited and logged without the body."""

    def _refused(self, message: Message, exc: BaseException | None, what: str) -> None:
        task_id, name = _headers(message)
        reason = refusal_reason(exc)
        lifecycle_log.refused_message(task_id, name, reason)
        log.warning(
            "refused %s message %s[%s] (content-type %s): %s",
            what,
            name,
            task_id,
            message.content_type,
            reason,
        )
        runtime = getattr(self.app, "taskgate_runtime", None)
        if isinstance(runtime, WorkerRuntime):
            try:
                runtime.audit(
                    AuditAction.TASK_REFUSED, target=task_id, outcome="denied", reason=reason
                )
            except Exception:  # the refusal stands even if the audit log is unreachable
                log.exception("could not audit the refusal of %s", task_id)

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        self._refused(message, exc, "undecodable")
        message.ack()

    def on_invalid_task(self, body: Any, message: Message, exc: Exception) -> None:
        self._refused(message, exc, "invalid")
        message.reject_log_error(log, getattr(self, "connection_errors", ()))

    def on_unknown_message(self, body: Any, message: Message) -> None:
        self._refused(message, None, "unknown-format")
        message.reject_log_error(log, getattr(self, "connection_errors", ()))

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        task_id, name = _headers(message)
        log.warning("refused message for unregistered task %s[%s]", name, task_id)
        lifecycle_log.refused_message(task_id, name, "unknown_task")
        runtime = getattr(self.app, "taskgate_runtime", None)
        if isinstance(runtime, WorkerRuntime):
            try:
                runtime.audit(
                    AuditAction.TASK_REFUSED,
                    target=task_id,
                    outcome="denied",
                    reason="unknown_task",
                )
            except Exception:
                log.exception("could not audit the refusal of %s", task_id)
        message.reject_log_error(log, getattr(self, "connection_errors", ()))
