"""Redis ACL lines for taskgate's roles, rendered from the key registry.

Pure: no Redis, no files. ``user default reset off`` first (:data:`DEFAULT_USER` says why
it keeps its rights while no one can log in as it), then one user per role with
``resetkeys resetchannels -@all`` and only what it needs:

- commands: :data:`ROLE_COMMANDS` (an explicit allow-list; no category grants);
- keys: ``~pattern`` where the role writes, ``%R~pattern`` where it only reads;
- channels: ``&pattern`` after ``resetchannels`` (the default allows every channel);
- selectors ``(~pattern +cmd ...)`` where a role may run a few commands only, e.g.
  append-only access to the audit stream;
- one script selector ``(~... +evalsha +eval)``: Redis checks a script's ``KEYS`` as
  read-write at the call, and every command the script runs against the caller's ACL
  (keys included) - so the script selector widens nothing by itself.

Note: no role is ever given FLUSHALL, FLUSHDB, CONFIG, ACL (but ``acl|whoami``), MONITOR,
REPLICAOF/SLAVEOF, DEBUG, MODULE, SHUTDOWN, KEYS or MIGRATE; :func:`render_acl` refuses
to render a command list that contains one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from workers.contract.keys import DEFAULT_QUEUE, REGISTRY, ROLES, KeySpec, Role

__all__ = [
    "DEFAULT_USER",
    "FORBIDDEN",
    "PLACEHOLDER",
    "ROLE_COMMANDS",
    "render_acl",
    "role_line",
]

PLACEHOLDER: Final = "<sha256-of-password>"
# Off and without a password: no connection can log in as it. It keeps every right because
# Redis 7.0 replays MULTI/EXEC blocks from the append-only file as the default user and
# silently drops those it refuses (every transaction lost on restart; ACL LOG shows them
# as "default ... context multi").
DEFAULT_USER: Final = "user default reset off ~* &* +@all"

FORBIDDEN: Final[frozenset[str]] = frozenset(
    {
        "flushall", "flushdb", "config", "acl", "monitor", "replicaof", "slaveof", "debug",
        "module", "shutdown", "keys", "migrate", "save", "bgsave", "bgrewriteaof", "sync",
        "psync", "failover", "swapdb", "move", "restore", "cluster", "script|flush",
        "script|kill", "function", "client|kill", "client|pause", "lastsave",
    }
)  # fmt: skip

# Every client: the handshake redis-py sends, transactions, scripts, who am I.
_CONNECTION: Final = (
    "auth", "hello", "ping", "echo", "select", "quit", "reset", "time", "type",
    "client|setname", "client|id", "acl|whoami",
    "multi", "exec", "discard", "watch", "unwatch",
    "evalsha", "eval", "script|load", "script|exists",
)  # fmt: skip
# Data commands shared by every role (keys are what tells the roles apart).
_SHARED: Final = (
    "get", "set", "del", "exists", "expire", "expireat", "hget", "hset", "hsetnx", "hgetall",
    "hincrby",
    "sadd", "smembers", "zadd", "zrem", "zrangebyscore", "lpush", "llen", "lrange",
    "xrange", "xrevrange", "xlen",
)  # fmt: skip

# Found with ACL LOG and MONITOR against the test suite, and from the code of taskgate,
# kombu's Redis transport, Celery's Redis backend and limits' moving window.
ROLE_COMMANDS: Final[Mapping[Role, tuple[str, ...]]] = {
    # submission scripts (INCR, ZCOUNT, SET NX GET), task and client views, the /v1/token
    # limiter (LINDEX, LTRIM), readiness (ZCOUNT of the worker heartbeats)
    "gateway": (
        *_CONNECTION,
        *_SHARED,
        "ttl",  # the /v1/token failure counters' remaining time (Retry-After)
        "incrby",  # ... and their count (redis-py's INCR sends INCRBY)
        "hexists",  # refusal counters (security.audit.refusals): a window being closed,
        "rename",  # ... moved aside under one name while its summary is written
        "hmget",
        "scard",
        "zcard",
        "zcount",
        "zrevrangebyscore",
        "incr",
        "lindex",
        "ltrim",
    ),
    # kombu (BRPOP/RPOP, unacked restore, bindings), Celery results (SETEX, PUBLISH; SUBSCRIBE
    # for AsyncResult.get), the start gate and the sweeper (LPOS, RPUSH, HEXISTS, ...),
    # heartbeats (ZADD, ZREM, ZREMRANGEBYSCORE)
    "worker": (
        *_CONNECTION,
        *_SHARED,
        "setex",
        "pexpire",
        "mget",
        "incr",
        "hmget",
        "hdel",
        "hexists",
        "srem",
        "zrange",
        "zrevrangebyscore",
        "zremrangebyscore",  # heartbeats of workers long gone (workers.heartbeat)
        "zscore",  # a holder's last beat, when reclaiming its deliveries (workers.liveness)
        "rpush",
        "lpos",
        "brpop",
        "rpop",
        "publish",
        "subscribe",
        "unsubscribe",
    ),
    # client management, dead letters (requeue, purge), audit read, append and trim
    "operator": (
        *_CONNECTION,
        *_SHARED,
        "hmget",
        "scard",
        "zcard",
        "zrevrangebyscore",
        "xadd",
        "xtrim",  # `taskgate audit archive` trims what it archived
    ),
    # Flower (`taskgate flower`): listens to task events, reads queue lengths; holds no
    # key of any kind, so nothing it can read opens
    "monitor": (
        *_CONNECTION,
        "sadd",  # kombu binds Flower's event queue to the event exchange ...
        "srem",  # ... and unbinds it on exit,
        "del",  # ... deleting the (always empty) queue list
        "smembers",
        "zadd",  # ... and keeps its binding alive by deadline (kombu's binding scripts:
        "zrangebyscore",  # TIME, ZADD, ZRANGEBYSCORE, EXISTS, DEL, ZREM)
        "zrem",
        "exists",
        "llen",  # queue lengths (Flower's broker page)
        "psubscribe",
        "punsubscribe",
        "subscribe",
        "unsubscribe",
    ),
}


def _forbidden(command: str) -> bool:
    """A forbidden command, or a subcommand of one (``config|get``), but ``acl|whoami``."""
    return command != "acl|whoami" and (
        command in FORBIDDEN or command.split("|", maxsplit=1)[0] in FORBIDDEN
    )


def _key_rules(role: Role, specs: Iterable[KeySpec]) -> tuple[list[str], list[str], list[str]]:
    """(key and channel rules, selectors, patterns a script may receive) for ``role``."""
    rules: list[str] = []
    selectors: list[str] = []
    script_keys: list[str] = []
    for spec in specs:
        if role not in spec.roles():
            continue
        if spec.channel:
            rules.append(f"&{spec.pattern}")
            continue
        if role in spec.write:
            rules.append(f"~{spec.pattern}")
        elif role in spec.read:
            rules.append(f"%R~{spec.pattern}")
        if role in spec.only:
            commands = " ".join(f"+{c}" for c in spec.only[role])
            selectors.append(f"(~{spec.pattern} {commands})")
        script_keys.append(f"~{spec.pattern}")
    return rules, selectors, script_keys


def _specs(queues: Iterable[str]) -> list[KeySpec]:
    """The registry, with every extra queue declared like the default one."""
    specs = list(REGISTRY)
    queue = next(s for s in REGISTRY if s.pattern == f"{DEFAULT_QUEUE}*")
    for name in queues:
        if name != DEFAULT_QUEUE and not name.startswith(DEFAULT_QUEUE):
            specs.append(KeySpec(f"{name}*", queue.what, write=queue.write, read=queue.read))
    return specs


def _check_word(word: str, what: str) -> str:
    if not word or any(c.isspace() or c in "()" or ord(c) < 0x21 for c in word):
        raise ValueError(f"{what} {word!r} cannot appear in an ACL line")
    return word


def role_line(role: Role, password_sha256: str | None, *, queues: Iterable[str] = ()) -> str:
    """The ``user`` line of ``role``; ``password_sha256`` is the hex SHA-256 of its password
    (``None`` renders :data:`PLACEHOLDER` - such a line does not load)."""
    commands = ROLE_COMMANDS[role]
    refused = sorted(c for c in commands if _forbidden(c))
    if refused:
        raise ValueError(f"role {role} must not get {', '.join(refused)}")
    if password_sha256 is None:
        secret = f"#{PLACEHOLDER}"
    elif len(password_sha256) == 64 and all(c in "0123456789abcdef" for c in password_sha256):
        secret = f"#{password_sha256}"
    else:
        raise ValueError("a password hash is 64 lowercase hex digits (SHA-256)")
    rules, selectors, script_keys = _key_rules(
        role, _specs(_check_word(q, "queue") for q in queues)
    )
    for rule in rules:
        _check_word(rule, "pattern")
    parts = ["user", role, "reset", "on", secret, "resetkeys", "resetchannels", "-@all"]
    parts += [f"+{c}" for c in commands]
    parts += rules
    parts += selectors
    parts.append(f"({' '.join(script_keys)} +evalsha +eval)")
    return " ".join(parts)


def render_acl(
    password_hashes: Mapping[Role, str | None], *, queues: Iterable[str] = ()
) -> list[str]:
    """Every ACL line: the default user off, then each role (hash or placeholder)."""
    queues = tuple(queues)
    lines = [DEFAULT_USER]
    lines += [role_line(role, password_hashes.get(role), queues=queues) for role in ROLES]
    return lines
