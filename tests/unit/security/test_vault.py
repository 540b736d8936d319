"""Secret references at the gateway: swapping secrets for sealed references.

What ``swap_secrets`` replaces, seals and refuses, and how ``write_entries`` queues the
sealed values on a pipeline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from security import vault
from security.errors import ConfigError, InputRejectedError, KeyRingError, VaultError
from security.keys import KeySet, Purpose, SymmetricKey
from security.vault import REF_KEY, VaultEntry, write_entries
from tests.support.vault_secrets import CANARY, NEW, OLD, OTHER, TASK
from tests.support.vault_secrets import assert_no_canary as _assert_no_canary
from tests.support.vault_secrets import swap as _swap

REF_RE = re.compile(r"[A-Za-z0-9_-]{22}")


class RecordingPipe:
    """A pipeline stand-in that records queued commands."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, int]] = []

    def set(self, name: str, value: bytes, *, ex: int) -> object:
        self.calls.append((name, value, ex))
        return self


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
