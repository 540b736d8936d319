"""The gateway's MAC'd task fields, the final-marker names and the revocation list."""

from __future__ import annotations

import pytest

from gateway.stores.checks import parse_revocations
from gateway.stores.task_records import MAC_FIELD, seal_of, signed_fields, verify_task
from security.errors import StoredStateError
from security.keys import KeySet, Purpose, SymmetricKey
from security.stored_state import Label, sign_record
from workers.contract.wire import REPLAY_MARGIN, REPLAY_WINDOW, replay_bucket, replay_field

KEYS = KeySet(Purpose.STATE, [SymmetricKey("state-1", Purpose.STATE, b"\x05" * 32)])
IAT = 1_750_000_000.123456


def _record(**changes: str) -> dict[str, str]:
    fields = signed_fields(
        KEYS, "t-1", owner="acme-0123abcd", name="email.send", seal_iat=IAT,
        seal_exp=IAT + 3600, replays=0,
    )  # fmt: skip
    return {**fields, "state": "started", "attempts": "2", **changes}


def test_a_record_as_written_verifies_whatever_the_worker_fields_say() -> None:
    """Worker-written progress fields are outside the MAC; the gateway's fields verify."""
    verify_task(KEYS, "t-1", _record(state="succeeded", error="x"))


@pytest.mark.parametrize("field", ["owner", "name", "seal_iat", "seal_exp", "replays"])
def test_each_gateway_field_is_covered(field: str) -> None:
    """Changing any gateway field of the record fails its MAC."""
    with pytest.raises(StoredStateError) as caught:
        verify_task(KEYS, "t-1", _record(**{field: "1"}))
    assert (caught.value.record, caught.value.reason) == ("task", "bad_mac")


def test_a_record_without_its_mac_is_refused() -> None:
    """A task record written without the state key is refused (missing_mac)."""
    record = _record()
    del record[MAC_FIELD]
    with pytest.raises(StoredStateError) as caught:
        verify_task(KEYS, "t-1", record)
    assert caught.value.reason == "missing_mac"


def test_the_seal_names_its_marker_bucket_and_field() -> None:
    """The record's seal gives the bucket by expiry window and the field by id and iat."""
    seal = seal_of("t-1", _record())
    assert seal is not None
    assert seal.bucket == replay_bucket(IAT + 3600) == f"tg:replay:{int((IAT + 3600) // 3600)}"
    assert seal.field == replay_field("t-1", IAT) == f"t-1:{IAT!r}"
    assert seal.bucket_expiry >= IAT + 3600 + REPLAY_MARGIN
    assert seal.bucket_expiry % REPLAY_WINDOW == REPLAY_MARGIN % REPLAY_WINDOW


def test_a_best_effort_record_has_no_seal() -> None:
    """Best-effort tasks are never sealed: no marker."""
    record = signed_fields(
        KEYS, "t-2", owner="a-0123abcd", name="x", seal_iat=None, seal_exp=None, replays=0
    )
    verify_task(KEYS, "t-2", record)
    assert seal_of("t-2", record) is None


def _revocations(jtis: str, version: str) -> list[str]:
    fields = {"jtis": jtis, "version": version}
    return [jtis, version, sign_record(KEYS, Label.REVOCATIONS, "jti", fields)]


def test_the_revocation_list_parses_when_authentic() -> None:
    """An authentic list gives its entries and version; no list at all is empty, version 0."""
    parsed = parse_revocations(KEYS, _revocations("a" * 32 + ":99", "7"))
    assert (parsed.version, parsed.entries) == (7, {"a" * 32: 99})
    assert parse_revocations(KEYS, [None, None, None]).entries == {}


def test_a_trimmed_revocation_list_is_refused() -> None:
    """Removing an entry (the MAC no longer matches) is refused."""
    values = _revocations("a" * 32 + ":99", "7")
    values[0] = ""
    with pytest.raises(StoredStateError) as caught:
        parse_revocations(KEYS, values)
    assert (caught.value.record, caught.value.reason) == ("revocations", "bad_mac")


def test_an_authentic_but_malformed_revocation_list_is_refused() -> None:
    """A list that verifies but does not parse is still never acted on."""
    with pytest.raises(StoredStateError) as caught:
        parse_revocations(KEYS, _revocations("x:notanumber", "1"))
    assert caught.value.reason == "malformed"
