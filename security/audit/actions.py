"""Every audit action taskgate writes (the ``action`` field of an audit record).

Gateway, workers, operator commands and ``security`` itself (archives, refusal summaries)
write records, so the vocabulary lives here, where all of them may import it.
:class:`AuditAction` is a ``StrEnum`` whose values are the stored strings: a member is the
string itself, so records, filters (``--action``, ``?action=``) and exports are unchanged.
Use the members as constants, never ``AuditAction(raw)`` on a hot path. Records read back
keep ``action: str`` - a log may hold actions of other versions.
``docs/audit.md`` lists each action; a unit test keeps the two, and the Lua scripts'
action strings, in step.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AuditAction"]


class AuditAction(StrEnum):
    """An audit record's ``action``: each value is exactly the string written."""

    # Tasks: the gateway's decisions, then the workers' outcomes.
    TASK_SUBMIT = "task.submit"
    TASK_CANCEL = "task.cancel"
    TASK_BEST_EFFORT = "task.best_effort"
    TASK_REFUSED = "task.refused"
    TASK_SUCCEEDED = "task.succeeded"
    TASK_FAILED = "task.failed"
    TASK_RETRIED = "task.retried"
    TASK_DEAD_LETTERED = "task.dead_lettered"
    TASK_REVOKED = "task.revoked"
    TASK_FENCED = "task.fenced"
    TASK_RECLAIMED = "task.reclaimed"
    TASK_RUN_INTERRUPTED = "task.run_interrupted"
    TASK_REQUEUED_LOST = "task.requeued_lost"
    TASK_REQUEUE_ABANDONED = "task.requeue_abandoned"
    # Callers: tokens, refusals (counted per window), forged records.
    TOKEN_ISSUE = "token.issue"  # noqa: S105 - an action name, not a password
    AUTH_REFUSED = "auth.refused"
    RATE_LIMIT_HIT = "rate_limit.hit"
    REFUSAL_OVERFLOW = "refusal.overflow"
    REFUSAL_UNKNOWN = "refusal.unknown"
    STATE_REFUSED = "state.refused"
    # Operators: sign-in, the console, the admin API and the operator commands.
    OPERATOR_FORBIDDEN = "operator.forbidden"
    CONSOLE_SIGNIN = "console.signin"
    CONSOLE_SIGNOUT = "console.signout"
    CONSOLE_CSRF = "console.csrf"
    ADMIN_TASKS_LIST = "admin.tasks.list"
    ADMIN_TASKS_INSPECT = "admin.tasks.inspect"
    ADMIN_TASKS_REVOKE = "admin.tasks.revoke"
    ADMIN_TASKS_RETRY = "admin.tasks.retry"
    ADMIN_DLQ_LIST = "admin.dlq.list"
    ADMIN_DLQ_INSPECT = "admin.dlq.inspect"
    ADMIN_DLQ_REQUEUE = "admin.dlq.requeue"
    ADMIN_DLQ_PURGE = "admin.dlq.purge"
    ADMIN_DLQ_GROUP_REQUEUE = "admin.dlq.group_requeue"
    ADMIN_DLQ_GROUP_PURGE = "admin.dlq.group_purge"
    ADMIN_CLIENTS_LIST = "admin.clients.list"
    ADMIN_CLIENTS_CREATE = "admin.clients.create"
    ADMIN_CLIENTS_UPDATE = "admin.clients.update"
    ADMIN_CLIENTS_DISABLE = "admin.clients.disable"
    ADMIN_CLIENTS_ENABLE = "admin.clients.enable"
    ADMIN_CLIENTS_ROTATE_SECRET = "admin.clients.rotate_secret"  # noqa: S105 - a name
    ADMIN_TOKENS_REVOKE = "admin.tokens.revoke"
    ADMIN_KEYS_LIST = "admin.keys.list"
    ADMIN_STATS = "admin.stats"
    KEYS_ROTATE = "keys.rotate"
    KEYS_RETIRE = "keys.retire"
    OPERATORS_ADD = "operators.add"
    OPERATORS_LIST = "operators.list"
    OPERATORS_REVOKE = "operators.revoke"
    # The audit log itself.
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_EXPORT = "audit.export"
    AUDIT_ARCHIVE = "audit.archive"
