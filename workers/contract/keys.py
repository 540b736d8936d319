"""Every Redis key, key prefix and pub/sub channel taskgate, Celery and kombu use.

One declaration per name: which roles write it, which only read it, and which may touch it
with a few commands only (a selector in the ACL, e.g. append-only). The builders below
are what the rest of the code calls; :mod:`workers.contract.acl` renders the Redis ACL
lines for the roles from :data:`REGISTRY`, so a key that is not declared here is a key
no role may touch.

Adding a key is adding one :class:`KeySpec` line to :data:`REGISTRY` (and a builder if
callers need one). Keys that ``security/`` builds stay defined there (``security`` must
not import ``workers``); this module imports their names instead.

Roles: ``gateway`` (HTTP API), ``worker`` (Celery workers), ``operator`` (the CLI and
admin tooling), ``monitor`` (Flower: task events and queue lengths, nothing else).
A compromised worker must not be able to forge what the gateway acts on: client records,
token revocations, idempotency records, rate-limit counters, the owner index; and it may
only append to the audit stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from security.audit_archive import base_key
from security.audit_store import DEFAULT_STREAM, head_key, turn_key
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
    "REGISTRY",
    "REPLAY_MARGIN",
    "REPLAY_PREFIX",
    "REPLAY_WINDOW",
    "RESULT_PREFIX",
    "REVOKED_JTI_LIST",
    "REVOKED_JTI_PREFIX",
    "REVOKED_TASK_PREFIX",
    "ROLES",
    "SUSPECT_PREFIX",
    "SWEEP_LOCK",
    "TASK_PREFIX",
    "TOKEN_FAILURES_PREFIX",
    "TOKEN_LIMIT_PREFIX",
    "VAULT_PREFIX",
    "WORKERS",
    "WORKER_ACTIVE_PREFIX",
    "KeySpec",
    "Role",
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

Role = Literal["gateway", "worker", "operator", "monitor"]
ROLES: Final[tuple[Role, ...]] = ("gateway", "worker", "operator", "monitor")

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
# refusal counters per window (``security.audit_refusals``) and the verify rate limit
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


# --- the registry ----------------------------------------------------------------------------
_G: Final[frozenset[Role]] = frozenset({"gateway"})
_W: Final[frozenset[Role]] = frozenset({"worker"})
_O: Final[frozenset[Role]] = frozenset({"operator"})
_M: Final[frozenset[Role]] = frozenset({"monitor"})
_GO: Final[frozenset[Role]] = _G | _O
_GW: Final[frozenset[Role]] = _G | _W
_ALL: Final[frozenset[Role]] = _G | _W | _O
_NONE: Final[frozenset[Role]] = frozenset()
_APPEND: Final = ("xadd",)


@dataclass(frozen=True)
class KeySpec:
    """One key, prefix or channel and who may do what with it.

    ``pattern`` is the Redis ACL glob. ``write``: full read/write access. ``read``: read
    commands only. ``only``: roles that may run just these commands on it (a selector),
    e.g. append-only access to the audit stream; they may also be in ``read``.
    """

    pattern: str
    what: str
    write: frozenset[Role] = _NONE
    read: frozenset[Role] = _NONE
    only: Mapping[Role, tuple[str, ...]] = field(default_factory=dict)
    channel: bool = False

    def roles(self) -> frozenset[Role]:
        """Every role with any access."""
        return self.write | self.read | frozenset(self.only)


REGISTRY: Final[tuple[KeySpec, ...]] = (
    # written by the gateway (and the operator's admin tooling); a worker never writes them
    KeySpec(f"{CLIENT_PREFIX}*", "API client records", write=_GO),
    KeySpec(CLIENTS_SET, "the set of client ids", write=_GO),
    KeySpec(f"{REVOKED_JTI_PREFIX}*", "revoked access tokens", write=_GO),
    KeySpec(f"{OPERATOR_PREFIX}*", "named operators (MAC'd)", write=_O, read=_G),
    KeySpec(OPERATORS_SET, "the set of operator names", write=_O, read=_G),
    KeySpec(f"{CONSOLE_SESSION_PREFIX}*", "web console sessions", write=_G),
    KeySpec(REVOKED_JTI_LIST, "the MAC'd list of revoked tokens", write=_GO),
    KeySpec(f"{IDEM_PREFIX}*", "idempotency records", write=_G),
    KeySpec(f"{RATE_LIMIT_PREFIX}*", "rate-limit counters", write=_G),
    KeySpec(f"{TOKEN_LIMIT_PREFIX}*", "the /v1/token limiter (slowapi/limits)", write=_G),
    KeySpec(f"{OWNER_INDEX_PREFIX}*", "each client's task ids (owner index)", write=_GO),
    KeySpec(ALL_TASKS, "every task id, for admins", write=_GO),
    # written by the gateway, consumed (read, then removed) by workers
    KeySpec(
        GLOBAL_QUEUED, "accepted, not started (all)", write=_GO, read=_W, only={"worker": ("zrem",)}
    ),
    KeySpec(
        f"{QUEUED_PREFIX}*",
        "accepted, not started (per client)",
        write=_GO,
        only={"worker": ("zrem",)},
    ),
    KeySpec(f"{MESSAGE_COPY_PREFIX}*", "the gateway's copy of each broker message", write=_ALL),
    KeySpec(f"{VAULT_PREFIX}*", "sealed secrets of a task", write=_ALL),
    # written by both sides
    KeySpec(f"{TASK_PREFIX}*", "task records (state written by workers)", write=_ALL),
    KeySpec(f"{REVOKED_TASK_PREFIX}*", "task revocations", write=_ALL),
    KeySpec(f"{RESULT_PREFIX}*", "sealed results (Celery backend)", write=_ALL),
    KeySpec(f"{RESULT_PREFIX}*", "result notifications (Celery backend)", write=_W, channel=True),
    # kombu's queue list and its priority variants (name + "\x06\x16" + n); the ACL
    # renderer adds the same line for every other queue it is told about
    KeySpec(f"{DEFAULT_QUEUE}*", "kombu's queue lists", write=_ALL, read=_M),
    KeySpec(DLQ_INDEX, "dead letters by time", write=_ALL),
    KeySpec(f"{DLQ_INDEX}:*", "dead letters", write=_ALL),
    # written by workers
    KeySpec(f"{DONE_PREFIX}*", "completion records", write=_W, read=_GO),
    KeySpec(
        f"{REPLAY_PREFIX}*",
        "final markers of gateway seals (create-only for workers)",
        write=_GO,
        only={"worker": ("hsetnx", "hmget", "hget", "hexists", "exists")},
    ),
    KeySpec(
        f"{ONCE_PREFIX}*",
        "side effects a task already did (create-only)",
        read=_GO,
        only={"worker": ("hexists", "hsetnx", "expire")},
    ),
    KeySpec(SWEEP_LOCK, "which worker sweeps", write=_W),
    KeySpec(WORKERS, "worker heartbeats (id -> last beat)", write=_W, read=_G),
    KeySpec(INFLIGHT, "deliveries in flight (tag -> holder token)", write=_W),
    KeySpec(f"{SUSPECT_PREFIX}*", "messages found missing once", write=_W),
    KeySpec(f"{WORKER_ACTIVE_PREFIX}*", "tasks each worker runs (per beat)", write=_W, read=_G),
    # metric counts: each role writes its own hash, /metrics (gateway) and stats read them
    KeySpec(METRICS_GATEWAY, "the gateways' metric counts", write=_G, read=_O),
    KeySpec(METRICS_OPERATOR, "the operator CLI's metric counts", write=_O, read=_G),
    KeySpec(METRICS_WORKER, "the workers' metric counts", write=_W, read=_GO),
    KeySpec(f"{METRICS_WINDOW_PREFIX}*", "the workers' counts per minute", write=_W, read=_GO),
    KeySpec(KOMBU_UNACKED, "kombu: messages in flight", write=_W),
    KeySpec(KOMBU_UNACKED_INDEX, "kombu: in-flight delivery times", write=_W),
    KeySpec(KOMBU_UNACKED_MUTEX, "kombu: restore mutex", write=_W),
    KeySpec(f"{KOMBU_BINDING_PREFIX}*", "kombu: queue bindings", write=_W),
    # task events (off unless TASKGATE_TASK_EVENTS): workers publish, Flower listens
    KeySpec(EVENT_CHANNELS, "Celery events (placeholders only)", write=_W, read=_M, channel=True),
    KeySpec(EVENT_BINDINGS, "kombu: Flower's event queue binding", write=_M),
    KeySpec(EVENT_QUEUES, "kombu: Flower's event queue (PUB/SUB: stays empty)", write=_M),
    KeySpec(EVENT_BINDINGS_PERMANENT, "kombu: permanent event bindings", write=_M),
    KeySpec(BINDING_DEADLINES, "kombu: when expiring bindings lapse", write=_M),
    # the audit log: everyone appends, only the operator trims or archives
    KeySpec(
        AUDIT_STREAM,
        "the audit stream",
        write=_O,
        read=_GW,
        only={"gateway": _APPEND, "worker": _APPEND},
    ),
    KeySpec(AUDIT_HEAD, "the audit chain's head", write=_ALL),
    KeySpec(AUDIT_TURN, "an audit writer's exclusive turn", write=_ALL),
    KeySpec(AUDIT_BASE, "the checkpoint the last trim left", write=_O, read=_G),
    KeySpec(f"{AUDIT_REFUSALS_PREFIX}*", "refusal counters per window", write=_G),
    KeySpec(f"{AUDIT_VERIFY_LIMIT_PREFIX}*", "the HTTP verify's rate limit", write=_G),
)
