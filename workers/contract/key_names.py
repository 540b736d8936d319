"""The names of every Redis key, key prefix and pub/sub channel taskgate, Celery and kombu
use, and the builders the rest of the code calls to make them.

Who may touch each name is declared next to it in :data:`workers.contract.keys.REGISTRY`
(a name without a ``KeySpec`` there is one no role may touch); callers import the names
from :mod:`workers.contract.keys`, which re-exports them. Keys that ``security/`` builds
stay defined there (``security`` must not import ``workers``); this module imports their
names instead.
"""

from __future__ import annotations

from typing import Final

from security.audit.archive import base_key
from security.audit.store import DEFAULT_STREAM, head_key, turn_key
from security.vault import VAULT_PREFIX

__all__ = [
    "ALL_TASKS",
    "AUDIT_BASE",
    "AUDIT_HEAD",
    "AUDIT_REFUSALS_PREFIX",
    "AUDIT_STREAM",
    "AUDIT_TURN",
    "AUDIT_VERIFY_LIMIT_PREFIX",
    "BINDING_DEADLINES",
    "CLIENTS_SET",
    "CLIENT_PREFIX",
    "CONSOLE_SESSION_PREFIX",
    "DEFAULT_QUEUE",
    "DLQ_INDEX",
    "DONE_PREFIX",
    "EVENT_BINDINGS",
    "EVENT_BINDINGS_PERMANENT",
    "EVENT_CHANNELS",
    "EVENT_QUEUES",
    "GLOBAL_QUEUED",
    "IDEM_PREFIX",
    "INFLIGHT",
    "KOMBU_BINDING_PREFIX",
    "KOMBU_UNACKED",
    "KOMBU_UNACKED_INDEX",
    "KOMBU_UNACKED_MUTEX",
    "MESSAGE_COPY_PREFIX",
    "METRICS_GATEWAY",
    "METRICS_OPERATOR",
    "METRICS_WINDOW",
    "METRICS_WINDOW_PREFIX",
    "METRICS_WINDOW_TTL",
    "METRICS_WORKER",
    "ONCE_PREFIX",
    "OPERATORS_SET",
    "OPERATOR_PREFIX",
    "OWNER_INDEX_PREFIX",
    "QUEUED_PREFIX",
    "RATE_LIMIT_PREFIX",
    "REPLAY_MARGIN",
    "REPLAY_PREFIX",
    "REPLAY_WINDOW",
    "RESULT_PREFIX",
    "REVOKED_JTI_LIST",
    "REVOKED_JTI_PREFIX",
    "REVOKED_TASK_PREFIX",
    "SUSPECT_PREFIX",
    "SWEEP_LOCK",
    "TASK_PREFIX",
    "TOKEN_FAILURES_PREFIX",
    "TOKEN_LIMIT_PREFIX",
    "VAULT_PREFIX",
    "WORKERS",
    "WORKER_ACTIVE_PREFIX",
    "client_key",
    "console_session_key",
    "dlq_key",
    "done_key",
    "idempotency_key",
    "message_copy_key",
    "metrics_window_key",
    "once_key",
    "operator_key",
    "owner_index",
    "queued_key",
    "rate_limit_key",
    "replay_bucket",
    "replay_bucket_expiry",
    "replay_field",
    "result_key",
    "revoked_jti_key",
    "revoked_key",
    "suspect_key",
    "task_key",
    "worker_active_key",
]

# --- names -------------------------------------------------------------------------------
DEFAULT_QUEUE: Final = "taskgate"  # kombu's queue list (priority variants: name + \x06\x16 + n)
GLOBAL_QUEUED: Final = "tg:queued"
QUEUED_PREFIX: Final = "tg:queued:"
ALL_TASKS: Final = "tg:tasks"  # every task id by submission time, for admins
TASK_PREFIX: Final = "tg:task:"
OWNER_INDEX_PREFIX: Final = "tg:tasks:"
REVOKED_TASK_PREFIX: Final = "tg:revoked:task:"
DONE_PREFIX: Final = "tg:done:"
REPLAY_PREFIX: Final = "tg:replay:"
REVOKED_JTI_LIST: Final = "tg:revoked:jtis"
# Final markers live until the end of their seal's expiry window plus this margin: past the
# seal's expiry a worker refuses the envelope anyway; the margin covers clock skew and a
# run that started just before the expiry (it writes its marker when it ends).
REPLAY_WINDOW: Final = 3600
REPLAY_MARGIN: Final = 3600
ONCE_PREFIX: Final = "tg:once:"
MESSAGE_COPY_PREFIX: Final = "tg:msg:"
SUSPECT_PREFIX: Final = "tg:sweep:suspect:"
SWEEP_LOCK: Final = "tg:sweep:lock"
# worker heartbeats: sorted set, member "{hostname}:{pid}", score the Unix time of its last beat
WORKERS: Final = "tg:workers"
# how many tasks each worker instance runs, per beat: "{prefix}{hostname}:{pid}" -> count
WORKER_ACTIVE_PREFIX: Final = "tg:worker-active:"
# deployment-wide metric counts (hashes, ``workers.contract.metrics``), one per writing role,
# and the workers' per-minute windows of them (``taskgate stats``)
METRICS_GATEWAY: Final = "tg:metrics:gateway"
METRICS_WORKER: Final = "tg:metrics:worker"
METRICS_OPERATOR: Final = "tg:metrics:operator"
METRICS_WINDOW_PREFIX: Final = "tg:metrics:worker:w:"
METRICS_WINDOW: Final = 60  # seconds per window
METRICS_WINDOW_TTL: Final = 25 * 3600  # a day of windows, and then some
# deliveries in flight, by holder: hash, field kombu's delivery tag, value the holder's
# ownership token "{worker id}/{nonce}-{sequence}" (workers.liveness)
INFLIGHT: Final = "tg:inflight"
CLIENTS_SET: Final = "tg:clients"
CLIENT_PREFIX: Final = "tg:client:"
# named operators (admin or auditor): MAC'd records written by the operator CLI
OPERATORS_SET: Final = "tg:operators"
OPERATOR_PREFIX: Final = "tg:operator:"
# web console sessions (gateway.console.session): server-side, expiring
CONSOLE_SESSION_PREFIX: Final = "tg:console:session:"
REVOKED_JTI_PREFIX: Final = "tg:revoked:jti:"
IDEM_PREFIX: Final = "tg:idem:"
RATE_LIMIT_PREFIX: Final = "tg:rl:"
TOKEN_LIMIT_PREFIX: Final = "tg:token"  # noqa: S105 - slowapi's key prefix for /v1/token, no secret
# failed /v1/token attempts per source and per (client id, source): under TOKEN_LIMIT_PREFIX
TOKEN_FAILURES_PREFIX: Final = "tg:token:fail:"  # noqa: S105 - a key prefix, no secret
DLQ_INDEX: Final = "tg:dlq"
AUDIT_STREAM: Final = DEFAULT_STREAM
AUDIT_HEAD: Final = head_key(DEFAULT_STREAM)
AUDIT_TURN: Final = turn_key(DEFAULT_STREAM)
AUDIT_BASE: Final = base_key(DEFAULT_STREAM)  # the signed checkpoint a trim leaves behind
# refusal counters per window (``security.audit.refusals``) and the verify rate limit
AUDIT_REFUSALS_PREFIX: Final = f"{DEFAULT_STREAM}:refusals"
AUDIT_VERIFY_LIMIT_PREFIX: Final = f"{DEFAULT_STREAM}:verify-limit:"
RESULT_PREFIX: Final = "celery-task-meta-"  # Celery's Redis result backend (key and channel)
# kombu's Redis transport (Channel.unacked_key etc.): delivered, unacknowledged messages by
# delivery tag. Our Celery config keeps kombu's default names and no global key prefix.
KOMBU_UNACKED: Final = "unacked"
KOMBU_UNACKED_INDEX: Final = "unacked_index"  # delivery tag -> time
KOMBU_UNACKED_MUTEX: Final = "unacked_mutex"  # who restores timed-out messages
# exchange -> queue bindings: _kombu.binding.<exchange>, _kombu.binding_permanent.<exchange>,
# _kombu.binding_deadlines (kombu 5.7)
KOMBU_BINDING_PREFIX: Final = "_kombu.binding"
# Celery task events (TASKGATE_TASK_EVENTS): kombu's fanout over PUB/SUB on channels
# "/{db}.celeryev/{routing key}" (Redis database 0). Flower subscribes with the pattern
# itself (PSUBSCRIBE patterns must match an ACL channel rule literally).
EVENT_CHANNELS: Final = "/0.celeryev/*"
EVENT_BINDINGS: Final = f"{KOMBU_BINDING_PREFIX}.celeryev"
EVENT_QUEUES: Final = "celeryev.*"
# kombu >= 5.6 keeps expiring queues' bindings alive by deadline (a script run by the
# consumer of such a queue: here only Flower's event queue).
EVENT_BINDINGS_PERMANENT: Final = "_kombu.binding_permanent.celeryev"
BINDING_DEADLINES: Final = "_kombu.binding_deadlines"


# --- builders ------------------------------------------------------------------------------
def task_key(task_id: str) -> str:
    """The task's record (hash): name, owner, state, timings; never the payload."""
    return f"{TASK_PREFIX}{task_id}"


def owner_index(client_id: str) -> str:
    """The client's task ids by submission time (sorted set)."""
    return f"{OWNER_INDEX_PREFIX}{client_id}"


def queued_key(client_id: str) -> str:
    """The client's accepted-but-not-started task ids (backpressure)."""
    return f"{QUEUED_PREFIX}{client_id}"


def revoked_key(task_id: str) -> str:
    """A task revocation that survives worker restarts."""
    return f"{REVOKED_TASK_PREFIX}{task_id}"


def replay_bucket(seal_exp: float) -> str:
    """The final-marker bucket of a seal expiring at ``seal_exp``."""
    return f"{REPLAY_PREFIX}{int(seal_exp // REPLAY_WINDOW)}"


def replay_bucket_expiry(seal_exp: float) -> int:
    """When that bucket may go (Unix seconds): its window's end plus the margin."""
    return (int(seal_exp // REPLAY_WINDOW) + 1) * REPLAY_WINDOW + REPLAY_MARGIN


def replay_field(task_id: str, seal_iat: float) -> str:
    """The marker of one gateway seal of ``task_id`` (its signed issue time tells them
    apart: a dead letter requeued by an operator is sealed again)."""
    return f"{task_id}:{float(seal_iat)!r}"


def once_key(task_id: str) -> str:
    """Which of a task's side effects already ran (``workers.once``)."""
    return f"{ONCE_PREFIX}{task_id}"


def done_key(task_id: str) -> str:
    """Completion record: a redelivered finished task is not run again."""
    return f"{DONE_PREFIX}{task_id}"


def message_copy_key(task_id: str) -> str:
    """The broker message as the gateway queued it, until a worker's start gate takes it."""
    return f"{MESSAGE_COPY_PREFIX}{task_id}"


def suspect_key(task_id: str) -> str:
    """When a sweep first found the task's message neither queued nor in flight."""
    return f"{SUSPECT_PREFIX}{task_id}"


def metrics_window_key(now: float) -> str:
    """The workers' metric counts of the window (minute) holding ``now``."""
    return f"{METRICS_WINDOW_PREFIX}{int(now // METRICS_WINDOW) * METRICS_WINDOW}"


def worker_active_key(member: str) -> str:
    """How many tasks the worker instance ``member`` ({hostname}:{pid}) is running."""
    return f"{WORKER_ACTIVE_PREFIX}{member}"


def client_key(client_id: str) -> str:
    """An API client's record (hash)."""
    return f"{CLIENT_PREFIX}{client_id}"


def operator_key(name: str) -> str:
    """A named operator's record (hash): role, credential hash, revoked flag."""
    return f"{OPERATOR_PREFIX}{name}"


def console_session_key(digest: str) -> str:
    """A console session, by the SHA-256 of its cookie value."""
    return f"{CONSOLE_SESSION_PREFIX}{digest}"


def revoked_jti_key(jti: str) -> str:
    """A revoked access token, by its ``jti``."""
    return f"{REVOKED_JTI_PREFIX}{jti}"


def idempotency_key(client_id: str, digest: str) -> str:
    """A submission's idempotency record, by client and the SHA-256 of its key."""
    return f"{IDEM_PREFIX}{client_id}:{digest}"


def rate_limit_key(name: str, ident: str, seconds: int, start: int) -> str:
    """One fixed-window rate-limit counter."""
    return f"{RATE_LIMIT_PREFIX}{name}:{ident}:{seconds}:{start}"


def dlq_key(task_id: str) -> str:
    """A dead letter (hash)."""
    return f"{DLQ_INDEX}:{task_id}"


def result_key(task_id: str) -> str:
    """Where Celery's Redis backend stores (and publishes) a task's result."""
    return f"{RESULT_PREFIX}{task_id}"
