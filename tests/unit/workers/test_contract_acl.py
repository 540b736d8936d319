"""The key registry and the ACL lines rendered from it (pure: no Redis)."""

from __future__ import annotations

import fnmatch
import re

import pytest

from security.audit.store import DEFAULT_STREAM, head_key
from security.vault import vault_key
from workers.contract import acl, keys
from workers.contract.acl import FORBIDDEN, PLACEHOLDER, ROLE_COMMANDS, render_acl, role_line

HASH = "ab" * 32
HASHES: dict[keys.Role, str | None] = {
    "gateway": HASH,
    "worker": HASH,
    "operator": HASH,
    "monitor": HASH,
}
TASK = "0b8f2c1e-0000-4000-8000-000000000001"

# Keys a compromised worker must not be able to write.
WORKER_MUST_NOT_WRITE = [
    keys.client_key("acme-0123abcd"),
    keys.CLIENTS_SET,
    keys.revoked_jti_key("jti"),
    keys.idempotency_key("acme-0123abcd", "d" * 64),
    keys.rate_limit_key("client", "acme-0123abcd", 60, 0),
    f"{keys.TOKEN_LIMIT_PREFIX}:LIMITER/ip/127.0.0.1/20/1/minute",
    keys.owner_index("acme-0123abcd"),
    keys.ALL_TASKS,
    keys.AUDIT_STREAM,
]


def _tokens(line: str) -> list[str]:
    """The rules of a user line outside its selectors."""
    return re.sub(r"\([^)]*\)", "", line).split()


def _selectors(line: str) -> list[list[str]]:
    return [s.split() for s in re.findall(r"\(([^)]*)\)", line)]


def _matches(patterns: list[str], key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _lines() -> dict[str, str]:
    return {line.split()[1]: line for line in render_acl(HASHES)}


def test_the_default_user_is_switched_off_first() -> None:
    """The first line turns Redis's default user off, without a password (no one logs in as
    it; Redis 7.0 replays the append-only file's transactions as it); then one per role."""
    lines = render_acl(HASHES)
    words = lines[0].split()
    assert words[:4] == ["user", "default", "reset", "off"]
    assert not [w for w in words if w.startswith((">", "#", "nopass", "on"))]
    assert [line.split()[1] for line in lines[1:]] == list(keys.ROLES)


def test_every_role_starts_from_nothing() -> None:
    """Each role resets keys, channels and commands before granting; channels reset before
    any ``&pattern``."""
    for role in keys.ROLES:
        tokens = _tokens(_lines()[role])
        for reset in ("reset", "resetkeys", "resetchannels", "-@all"):
            assert reset in tokens
        channels = [i for i, t in enumerate(tokens) if t.startswith("&")]
        assert all(tokens.index("resetchannels") < i for i in channels)
        assert not any(
            t.startswith("+@") or t in {"~*", "&*", "allkeys", "allcommands"} for t in tokens
        )


@pytest.mark.parametrize("role", keys.ROLES)
def test_no_role_gets_an_admin_command(role: keys.Role) -> None:
    """FLUSHALL, CONFIG, ACL (but WHOAMI), MONITOR, KEYS... appear in no role's grants."""
    granted = {t[1:] for t in _lines()[role].split() if t.startswith("+")}
    granted |= {t[1:] for sel in _selectors(_lines()[role]) for t in sel if t.startswith("+")}
    assert not granted & FORBIDDEN
    assert {g for g in granted if g.startswith("acl")} <= {"acl|whoami"}
    assert not any(g.split("|")[0] in FORBIDDEN for g in granted - {"acl|whoami"})


def test_a_forbidden_command_is_refused_at_render_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding FLUSHDB to a role's commands makes rendering fail, not a wider ACL."""
    monkeypatch.setitem(acl.ROLE_COMMANDS, "worker", (*ROLE_COMMANDS["worker"], "flushdb"))
    with pytest.raises(ValueError, match="flushdb"):
        role_line("worker", HASH)


def test_worker_cannot_write_what_the_gateway_acts_on() -> None:
    """The worker's root rules and selectors give no write access to client records,
    revocations, idempotency, limits, the owner index; the audit stream only by XADD."""
    line = _lines()["worker"]
    writable = [t[1:] for t in _tokens(line) if t.startswith("~")]
    for key in WORKER_MUST_NOT_WRITE:
        assert not _matches(writable, key), key
    for selector in _selectors(line):
        patterns = [t[1:] for t in selector if t.startswith("~")]
        commands = {t[1:] for t in selector if t.startswith("+")}
        if commands <= {"evalsha", "eval"}:
            continue  # the script selector: every command a script runs is checked again
        for key in WORKER_MUST_NOT_WRITE:
            if _matches(patterns, key):
                assert key == keys.AUDIT_STREAM
                assert commands == {"xadd"}


def test_every_builder_output_is_declared_in_the_registry() -> None:
    """Every key the code builds matches a registry pattern: nothing outside the ACLs."""
    built = [
        keys.task_key(TASK),
        keys.owner_index("c"),
        keys.queued_key("c"),
        keys.revoked_key(TASK),
        keys.done_key(TASK),
        keys.message_copy_key(TASK),
        keys.suspect_key(TASK),
        keys.client_key("c"),
        keys.revoked_jti_key("j"),
        keys.idempotency_key("c", "d"),
        keys.rate_limit_key("client", "c", 60, 0),
        keys.dlq_key(TASK),
        keys.result_key(TASK),
        vault_key(TASK, "A" * 22),
        DEFAULT_STREAM,
        head_key(DEFAULT_STREAM),
        keys.AUDIT_TURN,
        keys.GLOBAL_QUEUED,
        keys.ALL_TASKS,
        keys.SWEEP_LOCK,
        keys.DLQ_INDEX,
        keys.CLIENTS_SET,
        keys.DEFAULT_QUEUE,
        keys.KOMBU_UNACKED,
        keys.KOMBU_UNACKED_INDEX,
        keys.KOMBU_UNACKED_MUTEX,
        "_kombu.binding.taskgate",
        "_kombu.binding_permanent.taskgate",
    ]
    patterns = [spec.pattern for spec in keys.REGISTRY if not spec.channel]
    for key in built:
        assert _matches(patterns, key), key


def test_a_missing_hash_renders_a_placeholder_and_a_bad_one_is_refused() -> None:
    """No password file: a placeholder Redis will not load; a malformed hash is refused."""
    assert f"#{PLACEHOLDER}" in role_line("gateway", None)
    with pytest.raises(ValueError, match="SHA-256"):
        role_line("gateway", "not-a-hash")


def test_another_queue_gets_the_same_rights_as_the_default_queue() -> None:
    """Tasks routed to another queue: every role that may use ``taskgate*`` may use it
    (the monitor reads queue lengths only)."""
    lines = {line.split()[1]: line for line in render_acl(HASHES, queues=["reports"])}
    for role in keys.ROLES:
        expected = "%R~reports*" if role == "monitor" else "~reports*"
        assert expected in _tokens(lines[role])
    with pytest.raises(ValueError, match="queue"):
        render_acl(HASHES, queues=["bad queue"])
