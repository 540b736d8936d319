"""Audit records carry their writer's role, and only that role's key makes them verify."""

from __future__ import annotations

import os

import pytest

from security.audit.chain import (
    EMPTY_HEAD,
    AuditRecord,
    Head,
    chain_records,
    compute_mac,
    parse_entry,
)
from security.audit.verifier import ChainVerifier, VerifyReport
from security.errors import KeyRingError
from security.keys import AUDIT_PURPOSES, KeySet, Purpose, Role, SymmetricKey

KEYS: dict[Role, SymmetricKey] = {
    role: SymmetricKey(f"{purpose}-1", purpose, os.urandom(32))
    for role, purpose in AUDIT_PURPOSES.items()
}
ALL = [KeySet(key.purpose, [key]) for key in KEYS.values()]

Stream = list[tuple[str, dict[str, str]]]


def _record(actor: str, action: str, n: int = 0) -> AuditRecord:
    return AuditRecord.make(actor=actor, action=action, outcome="ok", now=1000.0 + n)


def _walk(stream: Stream, keys: list[KeySet[SymmetricKey]] = ALL) -> VerifyReport:
    head = f"{stream[-1][1]['seq']} {stream[-1][1]['mac']}"
    verifier = ChainVerifier(keys, stream="tg:audit", head=head)
    for stream_id, fields in stream:
        verifier.feed(stream_id, fields)
    return verifier.finish(head)


def _mixed_chain() -> Stream:
    """Gateway, then worker, then operator records, each MACed with its own key."""
    stream: Stream = []
    head = EMPTY_HEAD
    rows: list[tuple[Role, str, str]] = [
        ("gateway", "client:1", "task.submit"),
        ("worker", "worker", "task.succeeded"),
        ("operator", "admin:cli", "admin.dlq.purge"),
    ]
    for n, (role, actor, action) in enumerate(rows):
        (entry,) = chain_records(head, [_record(actor, action, n)], KEYS[role])
        head = Head(entry.seq, entry.mac)
        stream.append((f"{1000 + n}-0", entry.to_fields()))
    return stream


def test_each_entry_names_the_role_of_the_key_that_macs_it() -> None:
    """chain_records stamps writer from the key's purpose: the worker key writes 'worker'."""
    (entry,) = chain_records(EMPTY_HEAD, [_record("worker", "task.succeeded")], KEYS["worker"])
    assert entry.writer == "worker"
    assert entry.to_fields()["writer"] == "worker"
    assert entry.to_dict()["writer"] == "worker"
    assert parse_entry("1-0", entry.to_fields()).writer == "worker"


def test_a_chain_of_all_roles_verifies_with_every_roles_keys() -> None:
    """Records of the gateway, a worker and an operator in one chain all verify."""
    report = _walk(_mixed_chain())
    assert report.ok, report.first_bad
    assert report.count == 3


def test_a_worker_keyed_record_claiming_the_gateway_fails_verification() -> None:
    """A worker that MACs a record naming the gateway as writer (with its own, valid key)
    is caught: writer_mismatch at that entry."""
    stream = _mixed_chain()
    fields = dict(stream[1][1])
    fields["writer"] = "gateway"
    fields["mac"] = compute_mac(KEYS["worker"], fields)
    stream[1] = (stream[1][0], fields)
    report = _walk(stream[:2])
    assert not report.ok
    assert report.first_bad is not None
    assert (report.first_bad.index, report.first_bad.reason) == (1, "writer_mismatch")


@pytest.mark.parametrize("claimed", ["gateway", "operator"])
def test_a_worker_key_cannot_pass_for_another_roles_key_id(claimed: Role) -> None:
    """A record naming the gateway's (or operator's) key id but MACed with the worker's
    key is a bad MAC: the worker does not hold the key it names."""
    (entry,) = chain_records(EMPTY_HEAD, [_record("admin", "admin.keys.list")], KEYS["worker"])
    fields = entry.to_fields() | {"kid": KEYS[claimed].kid, "writer": claimed}
    fields["mac"] = compute_mac(KEYS["worker"], fields)
    report = _walk([("1-0", fields)])
    assert report.first_bad is not None
    assert report.first_bad.reason == "bad_mac"


def test_a_verifier_without_a_roles_keys_reports_its_records_unknown() -> None:
    """Verifying with the gateway's audit keys alone names a worker record unknown_kid."""
    report = _walk(_mixed_chain(), keys=[ALL[0]])
    assert report.first_bad is not None
    assert (report.first_bad.index, report.first_bad.reason) == (1, "unknown_kid")


def test_an_entry_naming_no_known_role_is_malformed() -> None:
    """A writer field that is not a role makes the entry malformed."""
    stream = _mixed_chain()
    stream[0][1]["writer"] = "root"
    report = _walk(stream)
    assert report.first_bad is not None
    assert report.first_bad.reason == "malformed"


@pytest.mark.parametrize("purpose", [Purpose.TOKEN, Purpose.STATE, Purpose.BROKER])
def test_keys_of_another_purpose_cannot_mac_or_verify(purpose: Purpose) -> None:
    """A token, state or broker key is refused as an audit key, to write or to verify."""
    key = SymmetricKey(f"{purpose}-1", purpose, os.urandom(32))
    with pytest.raises(KeyRingError):
        chain_records(EMPTY_HEAD, [_record("x", "y")], key)
    with pytest.raises(KeyRingError):
        ChainVerifier([*ALL, KeySet(purpose, [key])], stream="tg:audit", head=None)


def test_an_entry_of_the_format_before_per_role_keys_reads_but_never_verifies() -> None:
    """An entry with no writer field (the old shared-key format) parses with writer ""
    and round-trips, so old logs can be read and exported; verification names it
    legacy_format."""
    stream = _mixed_chain()
    old = {k: v for k, v in stream[0][1].items() if k != "writer"}
    entry = parse_entry("1000-0", old)
    assert entry.writer == ""
    assert entry.to_fields() == old
    report = _walk([("1000-0", old), *stream[1:]])
    assert report.first_bad is not None
    assert (report.first_bad.index, report.first_bad.reason) == (0, "legacy_format")
