"""Secret references at the worker: resolving them just in time.

What ``resolve_secrets`` gives back (in one round trip), and the references and blobs it
refuses: malformed, missing, moved to another task or reference, damaged, wrongly keyed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from security import vault
from security.errors import KeyRingError, VaultError
from security.keys import KeySet, Purpose, SymmetricKey
from security.vault import REF_KEY, vault_key
from tests.support.vault_secrets import CANARY, NEW, OLD, OTHER, OTHER_TASK, TASK, FakeRedis
from tests.support.vault_secrets import assert_no_canary as _assert_no_canary
from tests.support.vault_secrets import resolve as _resolve
from tests.support.vault_secrets import stored as _stored
from tests.support.vault_secrets import swap as _swap
from tests.support.vault_secrets import tamper_ciphertext as _tamper_ciphertext

# --- resolve ---------------------------------------------------------------------------


def test_resolve_returns_secretstr_values_in_a_new_payload() -> None:
    """References become SecretStr holding the original value; other fields are unchanged."""
    result = _swap(
        {"to": "x", "smtp": {"password": CANARY}, "h": [{"v": OTHER}]}, "smtp.password", "h.*.v"
    )
    resolved = _resolve(result.payload, _stored(result))
    assert isinstance(resolved["smtp"]["password"], SecretStr)
    assert resolved["smtp"]["password"].get_secret_value() == CANARY
    assert resolved["h"][0]["v"].get_secret_value() == OTHER
    assert resolved["to"] == "x"
    assert set(result.payload["smtp"]["password"]) == {REF_KEY}  # input untouched


def test_resolve_never_shows_the_value_in_str_or_repr() -> None:
    """The resolved payload prints '**********', not the value."""
    result = _swap({"pw": CANARY}, "pw")
    resolved = _resolve(result.payload, _stored(result))
    _assert_no_canary(resolved, resolved["pw"])
    assert "**********" in repr(resolved)


def test_resolve_fetches_every_value_in_one_mget() -> None:
    """All references, however many and wherever they are, cost one round trip."""
    payload = {"a": CANARY, "b": {"c": OTHER}, "d": [CANARY, OTHER, CANARY]}
    result = _swap(payload, "a", "b.c", "d.*")
    fake = _stored(result)
    _resolve(result.payload, fake)
    assert len(fake.mget_calls) == 1
    assert sorted(fake.mget_calls[0]) == sorted(e.redis_key for e in result.entries)


def test_resolve_fetches_a_repeated_reference_once() -> None:
    """The same reference twice is one key in the MGET and resolves in both places."""
    result = _swap({"a": CANARY}, "a")
    ref = result.payload["a"]
    fake = _stored(result)
    resolved = _resolve({"x": ref, "y": [dict(ref)]}, fake)
    assert fake.mget_calls == [[result.entries[0].redis_key]]
    assert resolved["y"][0].get_secret_value() == CANARY


def test_resolve_without_references_makes_no_round_trip() -> None:
    """A payload with no reference is copied and Redis is not called."""
    fake = FakeRedis()
    payload = {"a": [1, {"b": "c"}]}
    resolved = _resolve(payload, fake)
    assert resolved == payload
    assert resolved is not payload
    assert fake.mget_calls == []


def test_resolve_opens_values_sealed_with_an_older_live_key() -> None:
    """After rotation, values sealed with the previous key still open."""
    result = _swap({"a": CANARY}, "a", keys=KeySet(Purpose.VAULT, [OLD]))
    assert _resolve(result.payload, _stored(result))["a"].get_secret_value() == CANARY


@pytest.mark.parametrize(
    "ref",
    [
        {REF_KEY: "A" * 22, "extra": 1},
        {REF_KEY: 12345},
        {REF_KEY: None},
        {REF_KEY: "short"},
        {REF_KEY: "A" * 21 + "!"},
        {REF_KEY: "../../etc/passwd-xxxxx"},
    ],
)
def test_resolve_refuses_a_malformed_reference(ref: dict[str, Any]) -> None:
    """Only exactly {"$secret": <22 urlsafe chars>} is a reference; anything else fails."""
    fake = FakeRedis()
    with pytest.raises(VaultError) as info:
        _resolve({"a": {"b": ref}}, fake)
    assert info.value.reason == "malformed_reference"
    assert "a.b" in str(info.value)
    assert fake.mget_calls == []


def test_resolve_reports_a_missing_value_as_unavailable() -> None:
    """An expired or deleted value fails with secret_unavailable, naming the field."""
    result = _swap({"pw": CANARY}, "pw")
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, FakeRedis())
    assert info.value.reason == "secret_unavailable"
    assert "pw" in str(info.value)


def test_resolve_refuses_a_blob_moved_to_another_tasks_key() -> None:
    """A value copied under another task's key does not open there (binding)."""
    result = _swap({"pw": CANARY}, "pw")
    ref_id = result.ref_ids[0]
    fake = FakeRedis()
    fake.data[vault_key(OTHER_TASK, ref_id)] = result.entries[0].blob
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, fake, task_id=OTHER_TASK)
    assert info.value.reason == "binding_mismatch"
    _assert_no_canary(info.value)


def test_resolve_refuses_a_blob_moved_to_another_reference() -> None:
    """Within one task, a value stored under another reference id does not open either."""
    result = _swap({"a": CANARY, "b": OTHER}, "a", "b")
    ref_a, ref_b = result.ref_ids
    fake = _stored(result)
    fake.data[vault_key(TASK, ref_b)] = fake.data[vault_key(TASK, ref_a)]
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, fake)
    assert info.value.reason == "binding_mismatch"


def _tamper_task_in_header(blob: bytes) -> bytes:
    start = 2 + blob[1] + 1  # version, kid length, kid, task length
    return blob[:start] + bytes([blob[start] ^ 1]) + blob[start + 1 :]


def _swap_kid_in_header(blob: bytes) -> bytes:
    return blob.replace(NEW.kid.encode(), OLD.kid.encode(), 1)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_tamper_ciphertext, "tampered"),
        (_tamper_task_in_header, "tampered"),
        (_swap_kid_in_header, "tampered"),
        (lambda b: b[: len(b) - len(CANARY) - 1], "malformed_blob"),
        (lambda b: b[:3], "malformed_blob"),
        (lambda _: b"", "malformed_blob"),
        (lambda b: b"\x02" + b[1:], "malformed_blob"),
        (lambda b: b[:2] + b"\xff" + b[3:], "malformed_blob"),
        (lambda _: b"\x01\x07vault-2", "malformed_blob"),
        (lambda b: b.decode("latin-1"), "malformed_blob"),
    ],
    ids=[
        "ciphertext-bit",
        "task-id-bit",
        "kid-swapped",
        "truncated-tag",
        "truncated-header",
        "empty",
        "unknown-version",
        "non-ascii-header",
        "header-only",
        "decoded-str",
    ],
)
def test_resolve_refuses_a_damaged_blob(damage: Callable[[bytes], Any], reason: str) -> None:
    """Any change to the stored bytes is refused with a reason, never with the value."""
    result = _swap({"pw": CANARY}, "pw")
    fake = _stored(result)
    key = result.entries[0].redis_key
    fake.data[key] = damage(fake.data[key])
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, fake)
    assert info.value.reason == reason
    _assert_no_canary(info.value, info.value.__cause__, info.value.__context__)


def test_resolve_refuses_a_value_sealed_with_a_retired_key() -> None:
    """Retiring a key makes every value sealed with it unusable."""
    result = _swap({"pw": CANARY}, "pw", keys=KeySet(Purpose.VAULT, [OLD]))
    retired = KeySet(Purpose.VAULT, [SymmetricKey(OLD.kid, Purpose.VAULT, OLD.secret, True), NEW])
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, _stored(result), keys=retired)
    assert info.value.reason == "key_retired"


def test_resolve_refuses_a_value_sealed_with_an_unknown_key() -> None:
    """A key id the worker does not hold is refused."""
    result = _swap({"pw": CANARY}, "pw", keys=KeySet(Purpose.VAULT, [NEW]))
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, _stored(result), keys=KeySet(Purpose.VAULT, [OLD]))
    assert info.value.reason == "unknown_kid"


def test_resolve_refuses_a_sealed_value_that_is_not_utf8() -> None:
    """Authentic but undecodable bytes fail without chaining the codec error."""
    ref_id = "A" * 22
    fake = FakeRedis()
    fake.data[vault_key(TASK, ref_id)] = vault._seal(
        NEW, TASK, ref_id, b"\xff\xfe" + CANARY.encode()
    )
    with pytest.raises(VaultError) as info:
        _resolve({"pw": {REF_KEY: ref_id}}, fake)
    assert info.value.reason == "malformed_blob"
    assert info.value.__suppress_context__
    _assert_no_canary(info.value)


def test_resolve_refuses_an_mget_reply_of_the_wrong_shape() -> None:
    """A reply that does not match the request (a misbehaving client) fails closed."""

    class ShortReply(FakeRedis):
        def mget(self, keys: list[str]) -> list[Any]:
            return [None] * (len(keys) + 1)

    result = _swap({"pw": CANARY}, "pw")
    with pytest.raises(VaultError) as info:
        _resolve(result.payload, ShortReply())
    assert info.value.reason == "malformed_blob"


def test_resolve_refuses_keys_of_another_purpose_and_bad_task_ids() -> None:
    """Worker-side calls validate their inputs like the gateway side does."""
    broker = KeySet(Purpose.BROKER, [SymmetricKey("broker-1", Purpose.BROKER, os.urandom(32))])
    with pytest.raises(KeyRingError):
        _resolve({}, FakeRedis(), keys=broker)
    with pytest.raises(VaultError) as info:
        _resolve({}, FakeRedis(), task_id="a:b")
    assert info.value.reason == "bad_task_id"


def test_resolve_refuses_a_payload_nested_too_deep() -> None:
    """The worker-side walk is depth-capped with a VaultError."""
    payload: list[Any] = []
    node = payload
    for _ in range(vault.MAX_DEPTH + 1):
        node.append([])
        node = node[0]
    with pytest.raises(VaultError) as info:
        _resolve(payload, FakeRedis())
    assert info.value.reason == "too_deep"
