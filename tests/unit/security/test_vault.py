"""Secret references: swap at the gateway, resolve just in time at the worker, delete after."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from pydantic import SecretStr

from security import vault
from security.errors import (
    ConfigError,
    InputRejectedError,
    KeyRingError,
    TaskgateError,
    VaultError,
)
from security.keys import KeySet, Purpose, SymmetricKey
from security.vault import (
    REF_KEY,
    SwapResult,
    VaultEntry,
    delete_secrets,
    reference_ids,
    resolve_secrets,
    swap_secrets,
    unwrap,
    vault_key,
    write_entries,
)

CANARY = "canary-" + "Zq7hunter2-do-not-log"
OTHER = "other-" + "Wv4correct-horse"
TASK = "0b6f6a5e-7f1c-4c1e-9d1a-2b3c4d5e6f70"
OTHER_TASK = "9c7e1d2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
OLD = SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32))
NEW = SymmetricKey("vault-2", Purpose.VAULT, os.urandom(32))
KEYS = KeySet(Purpose.VAULT, [OLD, NEW])
REF_RE = re.compile(r"[A-Za-z0-9_-]{22}")


class FakeRedis:
    """Just enough of ``redis.Redis`` for the pure tests; counts round trips."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, int] = {}
        self.mget_calls: list[list[str]] = []
        self.delete_calls: list[tuple[str, ...]] = []

    def mget(self, keys: list[str]) -> list[Any]:
        self.mget_calls.append(list(keys))
        return [self.data.get(k) for k in keys]

    def delete(self, *keys: str) -> int:
        self.delete_calls.append(keys)
        return sum(self.data.pop(k, None) is not None for k in keys)

    def set(self, name: str, value: bytes, *, ex: int) -> object:
        self.data[name] = value
        self.ttls[name] = ex
        return True


class RecordingPipe:
    """A pipeline stand-in that records queued commands."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, int]] = []

    def set(self, name: str, value: bytes, *, ex: int) -> object:
        self.calls.append((name, value, ex))
        return self


def _stored(result: SwapResult) -> FakeRedis:
    fake = FakeRedis()
    for entry in result.entries:
        fake.set(entry.redis_key, entry.blob, ex=60)
    return fake


def _resolve(payload: Any, fake: FakeRedis, *, task_id: str = TASK, keys: Any = KEYS) -> Any:
    return resolve_secrets(payload, task_id=task_id, keys=keys, client=fake)  # type: ignore[arg-type]


def _swap(
    payload: dict[str, Any], *paths: str, task_id: str = TASK, keys: Any = KEYS
) -> SwapResult:
    return swap_secrets(payload, paths, task_id=task_id, keys=keys)


def _assert_no_canary(*things: object) -> None:
    for thing in things:
        assert CANARY not in str(thing)
        assert CANARY not in repr(thing)


# --- swap ------------------------------------------------------------------------------


def test_swap_replaces_the_secret_with_a_reference_and_keeps_the_input_intact() -> None:
    """The new payload holds {"$secret": id}; the caller's payload is not modified."""
    payload: dict[str, Any] = {"to": "a@example.com", "smtp": {"host": "mail", "password": CANARY}}
    result = _swap(payload, "smtp.password")
    assert payload["smtp"]["password"] == CANARY
    ref = result.payload["smtp"]["password"]
    assert list(ref) == [REF_KEY]
    assert REF_RE.fullmatch(ref[REF_KEY])
    assert result.payload["to"] == "a@example.com"
    assert result.payload["smtp"]["host"] == "mail"
    assert result.ref_ids == (ref[REF_KEY],)
    assert result.payload["smtp"] is not payload["smtp"]


def test_swap_makes_one_entry_per_secret_keyed_by_task_and_reference() -> None:
    """Each entry's key is tg:vault:<task>:<ref> and reference ids never repeat."""
    result = _swap({"a": CANARY, "b": OTHER}, "a", "b")
    assert [e.redis_key for e in result.entries] == [f"tg:vault:{TASK}:{r}" for r in result.ref_ids]
    assert len(set(result.ref_ids)) == 2


def test_swap_seals_the_value_so_the_blob_holds_no_plaintext() -> None:
    """The stored blob is ciphertext: the value's bytes do not appear in it."""
    result = _swap({"a": CANARY}, "a")
    assert CANARY.encode() not in result.entries[0].blob
    assert result.entries[0].blob[0] == 1


def test_swap_seals_with_the_newest_live_key() -> None:
    """The blob names the newest live key id (rotation: new values use the new key)."""
    retired_newest = SymmetricKey("vault-3", Purpose.VAULT, os.urandom(32), retired=True)
    keys = KeySet(Purpose.VAULT, [OLD, NEW, retired_newest])
    blob = _swap({"a": CANARY}, "a", keys=keys).entries[0].blob
    assert blob[2 : 2 + blob[1]] == NEW.kid.encode()


def test_swap_follows_star_over_list_items_and_mapping_values() -> None:
    """'*' names every item of a list and every value of a mapping, with concrete paths."""
    payload = {
        "headers": [{"name": "X-Token", "value": CANARY}, {"name": "X-Other", "value": OTHER}],
        "extra": {"k1": CANARY, "k2": OTHER},
    }
    result = _swap(payload, "headers.*.value", "extra.*")
    assert len(result.entries) == 4
    assert result.payload["headers"][0]["name"] == "X-Token"
    assert set(result.payload["headers"][1]["value"]) == {REF_KEY}
    assert set(result.payload["extra"]["k2"]) == {REF_KEY}


def test_swap_skips_missing_and_none_secret_fields() -> None:
    """Absent or None fields (optional secrets) are skipped, at any level of the path."""
    payload: dict[str, Any] = {"smtp": None, "api": {}, "token": None, "items": [None, {"x": 1}]}
    result = _swap(payload, "smtp.password", "api.key", "token", "nothing", "items.*.secret")
    assert result.entries == ()
    assert result.payload == payload


def test_swap_copies_tuples_as_lists() -> None:
    """JSON containers are copied; tuples become lists so references can be written in."""
    result = _swap({"pair": (CANARY, None), "other": ("x",)}, "pair.*")
    assert isinstance(result.payload["pair"], list)
    assert result.payload["pair"][1] is None
    assert set(result.payload["pair"][0]) == {REF_KEY}
    assert result.payload["other"] == ["x"]


def test_swap_handles_overlapping_paths_once() -> None:
    """Duplicate or overlapping patterns swap each field once."""
    result = _swap({"a": {"b": CANARY}}, "a.b", "a.b", "a.*")
    assert len(result.entries) == 1


def test_swap_refuses_a_non_string_secret_naming_the_field() -> None:
    """A secret must be a string; the error names the field, not the value."""
    with pytest.raises(InputRejectedError) as info:
        _swap({"smtp": {"password": 12345678}}, "smtp.password")
    assert info.value.field == "smtp.password"
    assert info.value.reason == "secret_not_string"
    assert "12345678" not in str(info.value)


def test_swap_refuses_a_secret_that_cannot_be_encoded() -> None:
    """A lone surrogate is refused and the codec error (which quotes it) is not chained."""
    with pytest.raises(InputRejectedError) as info:
        _swap({"pw": CANARY + "\ud800"}, "pw")
    assert info.value.reason == "secret_not_text"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    _assert_no_canary(info.value)


@pytest.mark.parametrize(
    "payload",
    [{REF_KEY: "x"}, {"a": {REF_KEY: "x", "b": 1}}, {"a": [1, {REF_KEY: "x"}]}],
)
def test_swap_refuses_a_client_supplied_reference(payload: dict[str, Any]) -> None:
    """A client cannot smuggle in '$secret' to point a worker at a stored value."""
    with pytest.raises(InputRejectedError) as info:
        _swap(payload, "a")
    assert info.value.reason == "reserved_key"


@pytest.mark.parametrize(
    ("payload", "path", "field"),
    [
        ({"smtp": "mail.example.com"}, "smtp.password", "smtp"),
        ({"headers": [{"value": "x"}]}, "headers.0.value", "headers"),
        ({"a": {"b": [CANARY]}}, "a.b.c", "a.b"),
    ],
)
def test_swap_refuses_a_payload_that_does_not_fit_a_path(
    payload: dict[str, Any], path: str, field: str
) -> None:
    """A scalar or a list where the path expects a mapping fails closed, naming the field."""
    with pytest.raises(InputRejectedError) as info:
        _swap(payload, path)
    assert info.value.reason == "secret_path_mismatch"
    assert info.value.field == field


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a."])
def test_swap_refuses_a_malformed_secret_path(path: str) -> None:
    """A catalogue path with empty segments is a configuration error."""
    with pytest.raises(ConfigError) as info:
        _swap({"a": CANARY}, path)
    assert info.value.setting == "secret_paths"


@pytest.mark.parametrize("task_id", ["", "a:b", "a" * 129, "tâche", "a/b"])
def test_swap_refuses_a_malformed_task_id(task_id: str) -> None:
    """Task ids become part of Redis keys: only [A-Za-z0-9_-]{1,128}."""
    with pytest.raises(VaultError) as info:
        _swap({"a": CANARY}, "a", task_id=task_id)
    assert info.value.reason == "bad_task_id"


def test_swap_refuses_keys_of_another_purpose() -> None:
    """Broker keys must never seal vault values."""
    broker = KeySet(Purpose.BROKER, [SymmetricKey("broker-1", Purpose.BROKER, os.urandom(32))])
    with pytest.raises(KeyRingError) as info:
        _swap({"a": CANARY}, "a", keys=broker)
    assert info.value.reason == "purpose"


def test_swap_refuses_when_every_key_is_retired() -> None:
    """With no live key nothing can be sealed."""
    keys = KeySet(Purpose.VAULT, [SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32), True)])
    with pytest.raises(KeyRingError) as info:
        _swap({"a": CANARY}, "a", keys=keys)
    assert info.value.reason == "no_key"


def test_swap_refuses_a_key_id_too_long_for_the_blob_header() -> None:
    """Header fields carry a one-byte length; a longer key id is refused, not truncated."""
    kid = "a" * 300 + "-20250101T000000Z-0123abcd"
    keys = KeySet(Purpose.VAULT, [SymmetricKey(kid, Purpose.VAULT, os.urandom(32))])
    with pytest.raises(KeyRingError) as info:
        _swap({"a": CANARY}, "a", keys=keys)
    assert info.value.reason == "bad_kid"


def test_swap_refuses_a_payload_nested_too_deep() -> None:
    """Runaway nesting stops with a typed error, not a RecursionError."""
    payload: dict[str, Any] = {}
    node = payload
    for _ in range(vault.MAX_DEPTH + 1):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InputRejectedError) as info:
        _swap(payload, "a")
    assert info.value.reason == "too_deep"


def test_swap_result_and_entries_never_show_the_value() -> None:
    """repr/str of the result and its entries hold neither the value nor the blob."""
    result = _swap({"a": CANARY}, "a")
    assert all(isinstance(e, VaultEntry) for e in result.entries)
    _assert_no_canary(result, *result.entries)
    assert repr(result.entries[0].blob) not in repr(result)


# --- write_entries ---------------------------------------------------------------------


def test_write_entries_queues_one_set_with_ttl_per_entry() -> None:
    """Each entry becomes SET key blob EX ttl on the given pipeline; nothing else."""
    result = _swap({"a": CANARY, "b": OTHER}, "a", "b")
    pipe = RecordingPipe()
    write_entries(pipe, result.entries, 300)
    assert pipe.calls == [(e.redis_key, e.blob, 300) for e in result.entries]


@pytest.mark.parametrize(
    "make_pipe",
    [lambda: redis.Redis().pipeline(), lambda: redis.asyncio.Redis().pipeline()],
    ids=["sync", "asyncio"],
)
def test_write_entries_fits_sync_and_asyncio_pipelines(make_pipe: Callable[[], Any]) -> None:
    """Both redis-py pipelines queue the SETs (no connection is made until execute)."""
    result = _swap({"a": CANARY}, "a")
    pipe = make_pipe()
    write_entries(pipe, result.entries, 60)
    [(args, options)] = pipe.command_stack
    assert args == ("SET", result.entries[0].redis_key, result.entries[0].blob, "EX", 60)
    assert options == {}


@pytest.mark.parametrize("ttl", [0, -1, True, 1.5])
def test_write_entries_refuses_a_ttl_that_is_not_a_positive_int(ttl: Any) -> None:
    """A stored secret must expire: zero, negative, bool and float TTLs are refused."""
    with pytest.raises(ConfigError):
        write_entries(RecordingPipe(), [], ttl)


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


def _tamper_ciphertext(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


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


# --- reference ids, delete, unwrap, keys -----------------------------------------------


def test_reference_ids_lists_each_reference_once_in_order() -> None:
    """Ids come out in payload order without repeats; no reference gives []."""
    a, b = "a" * 22, "b" * 22
    payload = {"x": {REF_KEY: a}, "y": [{REF_KEY: b}, {REF_KEY: a}]}
    assert reference_ids(payload) == [a, b]
    assert reference_ids({"x": 1}) == []


def test_reference_ids_refuses_a_malformed_reference() -> None:
    """A malformed reference is an error, not silently ignored."""
    with pytest.raises(VaultError):
        reference_ids({"x": {REF_KEY: "nope"}})


def test_delete_secrets_by_ids_and_by_payload_in_one_call() -> None:
    """Deleting takes ids or the swapped payload, issues one DEL, and counts what existed."""
    result = _swap({"a": CANARY, "b": OTHER}, "a", "b")
    fake = _stored(result)
    assert delete_secrets(fake, TASK, list(result.ref_ids[:1])) == 1  # type: ignore[arg-type]
    assert delete_secrets(fake, TASK, result.payload) == 1  # type: ignore[arg-type]
    assert fake.data == {}
    assert len(fake.delete_calls) == 2
    assert delete_secrets(fake, TASK, result.payload) == 0  # type: ignore[arg-type]


def test_delete_secrets_with_nothing_to_delete_makes_no_call() -> None:
    """No references, no round trip."""
    fake = FakeRedis()
    assert delete_secrets(fake, TASK, {"a": 1}) == 0  # type: ignore[arg-type]
    assert delete_secrets(fake, TASK, []) == 0  # type: ignore[arg-type]
    assert fake.delete_calls == []


def test_delete_secrets_refuses_malformed_ids() -> None:
    """Ids become key names: anything but a reference id is refused before any I/O."""
    fake = FakeRedis()
    with pytest.raises(VaultError) as info:
        delete_secrets(fake, TASK, ["*"])  # type: ignore[arg-type]
    assert info.value.reason == "malformed_reference"
    with pytest.raises(VaultError):
        delete_secrets(fake, "a:*", ["A" * 22])  # type: ignore[arg-type]
    assert fake.delete_calls == []


def test_unwrap_turns_secretstr_back_into_plain_values() -> None:
    """unwrap copies nested structures and reveals SecretStr only where called."""
    value = {"a": SecretStr(CANARY), "b": [SecretStr(OTHER), 1], "c": (2,), "d": "x"}
    assert unwrap(value) == {"a": CANARY, "b": [OTHER, 1], "c": [2], "d": "x"}


def test_vault_key_validates_its_parts() -> None:
    """The key shape is fixed and both parts are validated."""
    assert vault_key(TASK, "A" * 22) == f"tg:vault:{TASK}:{'A' * 22}"
    with pytest.raises(VaultError):
        vault_key(TASK, "A" * 23)


def test_every_vault_failure_is_a_taskgate_error_without_the_value() -> None:
    """Errors raised on the way carry no value in message, args or reason."""
    result = _swap({"pw": CANARY}, "pw")
    failures: list[TaskgateError] = []
    for task_id in (OTHER_TASK, TASK):
        fake = FakeRedis()
        fake.data[vault_key(task_id, result.ref_ids[0])] = _tamper_ciphertext(
            result.entries[0].blob
        )
        try:
            _resolve(result.payload, fake, task_id=task_id)
        except TaskgateError as exc:
            failures.append(exc)
    assert len(failures) == 2
    for failure in failures:
        _assert_no_canary(failure, failure.args, failure.message, failure.reason)


# --- real Redis ------------------------------------------------------------------------


@pytest.mark.integration
def test_round_trip_through_real_redis_with_one_pipeline(redis_client: redis.Redis) -> None:
    """Gateway pipelines the SETs with a TTL; worker resolves; delete removes them for good."""
    result = _swap(
        {"smtp": {"password": CANARY}, "api": {"key": OTHER}}, "smtp.password", "api.key"
    )
    pipe = redis_client.pipeline(transaction=False)
    write_entries(pipe, result.entries, 120)
    assert pipe.execute() == [True, True]
    for entry in result.entries:
        assert 0 < redis_client.ttl(entry.redis_key) <= 120
        assert CANARY.encode() not in redis_client.get(entry.redis_key)  # type: ignore[operator]

    resolved = resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert resolved["smtp"]["password"].get_secret_value() == CANARY
    assert resolved["api"]["key"].get_secret_value() == OTHER

    assert delete_secrets(redis_client, TASK, result.payload) == 2
    with pytest.raises(VaultError) as info:
        resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert info.value.reason == "secret_unavailable"


@pytest.mark.integration
def test_real_redis_blob_copied_to_another_task_is_refused(redis_client: redis.Redis) -> None:
    """Someone with write access to Redis cannot hand a secret to another task."""
    result = _swap({"pw": CANARY}, "pw")
    write_entries(redis_client, result.entries, 60)
    redis_client.copy(result.entries[0].redis_key, vault_key(OTHER_TASK, result.ref_ids[0]))
    with pytest.raises(VaultError) as info:
        resolve_secrets(result.payload, task_id=OTHER_TASK, keys=KEYS, client=redis_client)
    assert info.value.reason == "binding_mismatch"


@pytest.mark.integration
async def test_async_pipeline_writes_what_the_sync_worker_resolves(
    async_redis: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    """The gateway's asyncio pipeline and the worker's sync client agree on the format."""
    result = _swap({"pw": CANARY}, "pw")
    async with async_redis.pipeline(transaction=False) as pipe:
        write_entries(pipe, result.entries, 60)
        assert await pipe.execute() == [True]
    resolved = resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert resolved["pw"].get_secret_value() == CANARY


def test_prefetched_blobs_resolve_without_asking_redis() -> None:
    """With ``blobs`` given, no MGET is sent and a missing blob is 'secret_unavailable'."""
    keys = KeySet(Purpose.VAULT, [SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32))])
    swapped = vault.swap_secrets({"pw": "hunter2-x"}, ["pw"], task_id="t-1", keys=keys)

    class NoRedis:
        def mget(self, *_: object) -> list[bytes]:
            raise AssertionError("MGET must not be sent")

    blobs = {e.redis_key: e.blob for e in swapped.entries}
    client: Any = NoRedis()
    out = vault.resolve_secrets(
        swapped.payload, task_id="t-1", keys=keys, client=client, blobs=blobs
    )
    assert isinstance(out["pw"], SecretStr)
    assert out["pw"].get_secret_value() == "hunter2-x"
    with pytest.raises(VaultError) as caught:
        vault.resolve_secrets(swapped.payload, task_id="t-1", keys=keys, client=client, blobs={})
    assert caught.value.reason == "secret_unavailable"
