"""Every Redis key, key prefix and pub/sub channel taskgate, Celery and kombu use.

One declaration per name: which roles write it, which only read it, and which may touch it
with a few commands only (a selector in the ACL, e.g. append-only). The names and their
builders (defined in :mod:`workers.contract.key_names`, re-exported here) are what the
rest of the code calls; :mod:`workers.contract.acl` renders the Redis ACL lines for the
roles from :data:`REGISTRY`, so a key that is not declared here is a key no role may
touch.

Adding a key is adding one :class:`KeySpec` line to :data:`REGISTRY` (and its name, and a
builder if callers need one, to ``workers.contract.key_names``). Keys that ``security/``
builds stay defined there (``security`` must not import ``workers``); ``key_names``
imports their names instead.

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

from workers.contract.key_names import (
    ALL_TASKS,
    AUDIT_BASE,
    AUDIT_HEAD,
    AUDIT_REFUSALS_PREFIX,
    AUDIT_STREAM,
    AUDIT_TURN,
    AUDIT_VERIFY_LIMIT_PREFIX,
    BINDING_DEADLINES,
    CLIENT_PREFIX,
    CLIENTS_SET,
    CONSOLE_SESSION_PREFIX,
    DEFAULT_QUEUE,
    DLQ_INDEX,
    DONE_PREFIX,
    EVENT_BINDINGS,
    EVENT_BINDINGS_PERMANENT,
    EVENT_CHANNELS,
    EVENT_QUEUES,
    GLOBAL_QUEUED,
    IDEM_PREFIX,
    INFLIGHT,
    KOMBU_BINDING_PREFIX,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    KOMBU_UNACKED_MUTEX,
    MESSAGE_COPY_PREFIX,
    METRICS_GATEWAY,
    METRICS_OPERATOR,
    METRICS_WINDOW,
    METRICS_WINDOW_PREFIX,
    METRICS_WINDOW_TTL,
    METRICS_WORKER,
    ONCE_PREFIX,
    OPERATOR_PREFIX,
    OPERATORS_SET,
    OWNER_INDEX_PREFIX,
    QUEUED_PREFIX,
    RATE_LIMIT_PREFIX,
    REPLAY_MARGIN,
    REPLAY_PREFIX,
    REPLAY_WINDOW,
    RESULT_PREFIX,
    REVOKED_JTI_LIST,
    REVOKED_JTI_PREFIX,
    REVOKED_TASK_PREFIX,
    SUSPECT_PREFIX,
    SWEEP_LOCK,
    TASK_PREFIX,
    TOKEN_FAILURES_PREFIX,
    TOKEN_LIMIT_PREFIX,
    VAULT_PREFIX,
    WORKER_ACTIVE_PREFIX,
    WORKERS,
    client_key,
    console_session_key,
    dlq_key,
    done_key,
    idempotency_key,
    message_copy_key,
    metrics_window_key,
    once_key,
    operator_key,
    owner_index,
    queued_key,
    rate_limit_key,
    replay_bucket,
    replay_bucket_expiry,
    replay_field,
    result_key,
    revoked_jti_key,
    revoked_key,
    suspect_key,
    task_key,
    worker_active_key,
)

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
