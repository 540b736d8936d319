"""The pure audit chain: records, neutralising, caps, canonical bytes, MACs, links."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.audit.chain import (
    EMPTY_HEAD,
    ENTRY_FIELDS,
    GENESIS,
    MAX_FIELD_CHARS,
    MAX_REASON_CHARS,
    RECORD_FIELDS,
    AuditEntry,
    AuditRecord,
    Head,
    chain_records,
    compute_mac,
    find_key,
    neutralise,
    parse_entry,
    parse_head,
    require_audit_keys,
)
from security.errors import AuditError, KeyRingError
from security.keys import KeySet, Purpose, SymmetricKey

NOW = 1_700_000_000.25
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _key(kid: str = "audit-1", *, retired: bool = False) -> SymmetricKey:
    return SymmetricKey(kid, Purpose.AUDIT_GATEWAY, os.urandom(32), retired=retired)


def _record(**overrides: object) -> AuditRecord:
    fields: dict[str, object] = {
        "actor": "client:42",
        "action": "task.submit",
        "outcome": "allowed",
        "target": "task-1",
        "request_id": "req-1",
        "reason": "scope ok",
        "now": NOW,
    }
    fields.update(overrides)
    return AuditRecord.make(**fields)  # type: ignore[arg-type]


def test_make_stamps_the_given_time() -> None:
    """AuditRecord.make takes its time from ``now``."""
    assert _record().time == NOW


def test_make_defaults_to_the_current_time() -> None:
    """Without ``now`` the record is stamped with the current epoch time."""
    before = time.time()
    record = AuditRecord.make(actor="admin", action="token.issue", outcome="ok")
    assert before <= record.time <= time.time()


def test_integer_time_is_stored_as_float() -> None:
    """An integer epoch is accepted and stored as a float (so its repr is stable)."""
    record = _record(now=1_700_000_000)
    assert isinstance(record.time, float)
    assert record.to_fields()["time"] == "1700000000.0"


@pytest.mark.parametrize("bad", [True, "1700000000", math.nan, math.inf, -1.0, None])
def test_bad_time_is_refused(bad: object) -> None:
    """Time must be a finite, non-negative number (not a bool or a string)."""
    with pytest.raises(AuditError) as info:
        AuditRecord(time=bad, actor="a", action="b", outcome="ok")  # type: ignore[arg-type]
    assert info.value.reason == "bad_record"


@pytest.mark.parametrize("field", ["actor", "action", "target", "request_id", "reason"])
def test_non_string_field_is_refused_without_echoing_it(field: str) -> None:
    """A non-string field raises bad_record naming the field, never the value."""
    with pytest.raises(AuditError) as info:
        _record(**{field: 123456789})
    assert info.value.reason == "bad_record"
    assert field in str(info.value)
    assert "123456789" not in str(info.value)


def test_unknown_outcome_is_refused_without_echoing_it() -> None:
    """Outcome is one of allowed/denied/ok/error; the bad value is not echoed."""
    with pytest.raises(AuditError) as info:
        _record(outcome="hunter2-maybe")
    assert info.value.reason == "bad_record"
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("field", ["actor", "action"])
def test_actor_and_action_are_required(field: str) -> None:
    """An empty actor or action is refused."""
    with pytest.raises(AuditError) as info:
        _record(**{field: ""})
    assert info.value.reason == "bad_record"


def test_no_extra_payload_field_can_be_carried() -> None:
    """The record has fixed fields: a payload or secret keyword is a TypeError."""
    with pytest.raises(TypeError):
        _record(payload={"password": "s3cret"})
    with pytest.raises(TypeError):
        AuditRecord(time=NOW, actor="a", action="b", outcome="ok", secret="x")  # type: ignore[call-arg]
    assert tuple(_record().to_fields()) == RECORD_FIELDS


def test_record_is_frozen() -> None:
    """A record cannot be changed after neutralising."""
    record = _record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.actor = "admin"  # type: ignore[misc]


@pytest.mark.parametrize(
    "raw",
    [
        "line\r\nforged: entry",
        "nul\x00byte",
        "\x1b[31mred",
        "tab\there",
        "del\x7f",
        "nel\x85",
        "ls\u2028ps\u2029",
        "bidi\u202eevil",
        "zw\u200bsp",
        "lone\ud800surrogate",
    ],
)
def test_control_characters_are_neutralised(raw: str) -> None:
    """CR, LF and every control/format/separator character becomes U+FFFD in every field."""
    record = _record(actor=raw, action=raw, target=raw, request_id=raw, reason=raw)
    for name in ("actor", "action", "target", "request_id", "reason"):
        value = getattr(record, name)
        assert "\ufffd" in value
        assert not any(unicodedata.category(ch) in UNSAFE for ch in value)
        assert len(value) == len(raw)


def test_printable_text_is_kept_as_is() -> None:
    """Ordinary text, spaces and non-ASCII letters pass unchanged."""
    assert _record(reason="café ✓ done").reason == "café ✓ done"


def test_fields_are_capped_with_a_visible_cut() -> None:
    """reason is capped at 200 characters, the others at 128; a cut ends with an ellipsis."""
    record = _record(reason="r" * 1000, actor="a" * 1000, target="t" * 129)
    assert len(record.reason) == MAX_REASON_CHARS
    assert record.reason.endswith("\u2026")
    assert len(record.actor) == MAX_FIELD_CHARS
    assert len(record.target) == MAX_FIELD_CHARS
    assert _record(target="t" * 128).target == "t" * 128


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_neutralise_is_safe_capped_and_idempotent(value: str, cap: int) -> None:
    """For any text: no unsafe character survives, length <= cap, twice = once."""
    once = neutralise(value, cap)
    assert len(once) <= cap
    assert not any(unicodedata.category(ch) in UNSAFE for ch in once)
    assert neutralise(once, cap) == once


def test_head_encodes_and_parses_back() -> None:
    """A head round-trips through its "seq mac" encoding."""
    head = Head(42, "ab" * 32)
    assert parse_head(head.encode()) == head
    assert parse_head(EMPTY_HEAD.encode()) == Head(0, GENESIS)


@pytest.mark.parametrize(
    "raw", ["", "1", "01 " + "a" * 64, "-1 " + "a" * 64, "1 " + "A" * 64, "1 " + "a" * 63, "x y"]
)
def test_malformed_head_is_refused(raw: str) -> None:
    """Anything but "<seq> <64 lowercase hex>" is bad_head."""
    with pytest.raises(AuditError) as info:
        parse_head(raw)
    assert info.value.reason == "bad_head"


def test_chain_links_records_after_the_head() -> None:
    """Entries continue the head's seq, each prev is the previous mac, all MACed with key."""
    key = _key()
    entries = chain_records(EMPTY_HEAD, [_record(), _record(), _record()], key)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev == GENESIS
    assert [e.prev for e in entries[1:]] == [e.mac for e in entries[:-1]]
    assert all(e.kid == "audit-1" and e.stream_id is None for e in entries)
    assert all(compute_mac(key, e.to_fields()) == e.mac for e in entries)
    more = chain_records(Head(entries[-1].seq, entries[-1].mac), [_record()], key)
    assert (more[0].seq, more[0].prev) == (4, entries[-1].mac)
    assert chain_records(EMPTY_HEAD, [], key) == []


def test_mac_matches_the_documented_canonical_form() -> None:
    """mac = HMAC-SHA256(key, JSON array of the domain tag and every field but mac)."""
    key = SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, bytes(range(32)))
    (entry,) = chain_records(EMPTY_HEAD, [_record(reason='quote " and \\ é')], key)
    fields = entry.to_fields()
    canonical = json.dumps(
        ["taskgate.audit.v2", *(fields[n] for n in ENTRY_FIELDS[:-1])],
        ensure_ascii=True,
        separators=(",", ":"),
    ).encode()
    assert entry.mac == hmac.new(key.secret, canonical, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("field", [f for f in ENTRY_FIELDS if f != "mac"])
def test_mac_covers_every_field(field: str) -> None:
    """Changing any single field (link or record) changes the MAC."""
    key = _key()
    (entry,) = chain_records(EMPTY_HEAD, [_record()], key)
    fields = entry.to_fields()
    fields[field] += "0"
    assert compute_mac(key, fields) != entry.mac


def test_mac_depends_on_the_key() -> None:
    """The same fields under another key give another MAC."""
    (entry,) = chain_records(EMPTY_HEAD, [_record()], _key())
    assert compute_mac(_key(), entry.to_fields()) != entry.mac


def test_entry_fields_and_dict_have_fixed_shapes() -> None:
    """to_fields follows ENTRY_FIELDS; to_dict is JSON-ready and flat."""
    (entry,) = chain_records(EMPTY_HEAD, [_record()], _key())
    assert tuple(entry.to_fields()) == ENTRY_FIELDS
    out = dataclasses.replace(entry, stream_id="1-0").to_dict()
    assert set(out) == {"id", *ENTRY_FIELDS}
    assert out["id"] == "1-0"
    assert out["time"] == NOW
    json.dumps(out)


def test_parse_entry_round_trips() -> None:
    """Stream fields parse back into the same entry, with its stream id."""
    (entry,) = chain_records(EMPTY_HEAD, [_record()], _key())
    assert parse_entry("5-1", entry.to_fields()) == dataclasses.replace(entry, stream_id="5-1")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "0"),
        ("seq", "01"),
        ("seq", "x"),
        ("prev", "zz"),
        ("mac", "A" * 64),
        ("kid", "bad kid!"),
        ("time", "nan"),
        ("time", "yesterday"),
        ("outcome", "maybe"),
        ("actor", ""),
    ],
)
def test_parse_entry_refuses_bad_values_without_echoing_them(field: str, value: str) -> None:
    """A field of the wrong shape makes the entry malformed; the message names its id only."""
    (entry,) = chain_records(EMPTY_HEAD, [_record()], _key())
    fields = entry.to_fields() | {field: value}
    with pytest.raises(AuditError) as info:
        parse_entry("7-0", fields)
    assert info.value.reason == "malformed"
    assert "7-0" in str(info.value)
    assert value not in str(info.value) or value in "7-0"


def test_parse_entry_refuses_missing_or_extra_fields() -> None:
    """An entry with a field missing, or a payload-ish field added, is malformed."""
    (entry,) = chain_records(EMPTY_HEAD, [_record()], _key())
    fields = entry.to_fields()
    missing = {k: v for k, v in fields.items() if k != "reason"}
    for bad in (missing, fields | {"payload": "card=4111"}):
        with pytest.raises(AuditError) as info:
            parse_entry("1-0", bad)
        assert info.value.reason == "malformed"


def test_audit_keys_of_another_purpose_are_refused() -> None:
    """A token key set cannot MAC the audit log."""
    tokens = KeySet(Purpose.TOKEN, [SymmetricKey("token-1", Purpose.TOKEN, os.urandom(32))])
    with pytest.raises(KeyRingError) as info:
        require_audit_keys(tokens)
    assert info.value.reason == "purpose"
    require_audit_keys(KeySet(Purpose.AUDIT_GATEWAY, [_key()]))


def test_find_key_includes_retired_keys() -> None:
    """Verification finds retired keys too; an unknown kid gives None."""
    old, new = _key("audit-1", retired=True), _key("audit-2")
    keys = KeySet(Purpose.AUDIT_GATEWAY, [old, new])
    assert find_key(keys, "audit-1") is old
    assert find_key(keys, "audit-2") is new
    assert find_key(keys, "audit-3") is None


def test_entry_repr_holds_no_key_material() -> None:
    """An entry's repr shows its MAC and fields, never the key."""
    key = _key()
    (entry,) = chain_records(EMPTY_HEAD, [_record()], key)
    assert key.secret.hex() not in repr(entry)
    assert isinstance(entry, AuditEntry)
