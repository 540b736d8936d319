"""State MACs over stored records (``security.stored_state``): every refusal path."""

from __future__ import annotations

import base64

import pytest

from security.errors import KeyRingError, StoredStateError
from security.keys import KeySet, Purpose, SymmetricKey
from security.stored_state import Label, sign_record, verify_record

SECRET = b"\x42" * 32
OLD = SymmetricKey("state-old", Purpose.STATE, b"\x01" * 32)
NEW = SymmetricKey("state-new", Purpose.STATE, SECRET)
KEYS = KeySet(Purpose.STATE, [OLD, NEW])
FIELDS: dict[str, str | None] = {"owner": "acme-0123abcd", "name": "email.send", "replays": "0"}


def _reason(tag: str | bytes | None, **changes: object) -> str:
    fields = {**FIELDS, **changes}
    with pytest.raises(StoredStateError) as caught:
        verify_record(KEYS, Label.TASK, "t-1", fields, tag)  # type: ignore[arg-type]
    assert caught.value.record == "task"
    return caught.value.reason


def test_a_record_signed_with_the_newest_key_verifies() -> None:
    """What sign_record tags verifies, and the tag names the newest live state key."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    assert tag.startswith("state-new:")
    verify_record(KEYS, Label.TASK, "t-1", FIELDS, tag)
    verify_record(KEYS, Label.TASK, "t-1", FIELDS, tag.encode())


def test_a_record_signed_with_an_older_live_key_still_verifies() -> None:
    """Rotation: a tag made with an older live key verifies until that key is retired."""
    tag = sign_record(KeySet(Purpose.STATE, [OLD]), Label.TASK, "t-1", FIELDS)
    verify_record(KEYS, Label.TASK, "t-1", FIELDS, tag)


def test_a_changed_field_value_is_refused() -> None:
    """Changing any field's value breaks the MAC."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    assert _reason(tag, owner="mallory-0123abcd") == "bad_mac"
    assert _reason(tag, replays="1") == "bad_mac"


def test_a_deleted_field_is_refused() -> None:
    """A MAC'd field that is now missing (None) breaks the MAC."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    assert _reason(tag, replays=None) == "bad_mac"


def test_an_added_field_is_refused() -> None:
    """A field the MAC did not cover, added to the record, breaks it."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    assert _reason(tag, extra="x") == "bad_mac"


def test_an_empty_value_differs_from_a_missing_one() -> None:
    """Present-but-empty and absent encode differently."""
    tag = sign_record(KEYS, Label.TASK, "t-1", {**FIELDS, "error": ""})
    assert _reason(tag, error=None) == "bad_mac"


def test_field_boundaries_cannot_be_shifted() -> None:
    """Moving characters from one field's value into its name does not verify."""
    tag = sign_record(KEYS, Label.TASK, "t-1", {"ab": "c"})
    with pytest.raises(StoredStateError):
        verify_record(KEYS, Label.TASK, "t-1", {"a": "bc"}, tag)


def test_the_mac_is_bound_to_the_record_id() -> None:
    """A record copied under another id fails."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    with pytest.raises(StoredStateError) as caught:
        verify_record(KEYS, Label.TASK, "t-2", FIELDS, tag)
    assert caught.value.reason == "bad_mac"


def test_the_mac_is_bound_to_the_label() -> None:
    """A task record's MAC never verifies as a client record's (domain separation)."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    with pytest.raises(StoredStateError) as caught:
        verify_record(KEYS, Label.CLIENT, "t-1", FIELDS, tag)
    assert (caught.value.reason, caught.value.record) == ("bad_mac", "client")


@pytest.mark.parametrize("tag", [None, "", b""])
def test_a_record_without_a_mac_is_refused(tag: str | bytes | None) -> None:
    """A record written without the state key (e.g. before this scheme) is refused."""
    assert _reason(tag) == "missing_mac"


@pytest.mark.parametrize(
    "tag",
    [
        "no-separator",
        "bad kid:AAAA",
        "state-new:" + "A" * 10,  # too short
        "state-new:" + base64.urlsafe_b64encode(b"\0" * 33).decode().rstrip("="),  # too long
        "state-new:" + "!" * 43,  # not base64
        "state-new:" + "A" * 300,  # over the size cap
        b"state-new:\xff\xfe",  # not ASCII
    ],
)
def test_a_malformed_tag_is_refused(tag: str | bytes) -> None:
    """Anything but ``<kid>:<43 base64url characters>`` is malformed."""
    assert _reason(tag) == "malformed_mac"


def test_a_non_canonical_encoding_is_refused() -> None:
    """A tag whose base64 differs from the canonical one (spare low bits) is malformed."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    kid, _, encoded = tag.partition(":")
    last = encoded[-1]
    alphabet = "AEIMQUYcgkosw048"  # the 16 characters with the two spare bits clear
    tweaked = alphabet[(alphabet.index(last) + 1) % 16] if last in alphabet else "A"
    twin = encoded[:-1] + chr(ord(tweaked) + 1)
    assert _reason(f"{kid}:{twin}") in {"malformed_mac", "bad_mac"}


def test_an_unknown_key_id_is_refused() -> None:
    """A tag naming a key the ring does not hold is refused."""
    tag = sign_record(KeySet(Purpose.STATE, [SymmetricKey("state-x", Purpose.STATE, SECRET)]),
                      Label.TASK, "t-1", FIELDS)  # fmt: skip
    assert _reason(tag) == "unknown_key"


def test_a_retired_key_is_refused() -> None:
    """A tag made with a key that has since been retired is refused."""
    tag = sign_record(KeySet(Purpose.STATE, [OLD]), Label.TASK, "t-1", FIELDS)
    retired = KeySet(
        Purpose.STATE, [SymmetricKey("state-old", Purpose.STATE, OLD.secret, True), NEW]
    )
    with pytest.raises(StoredStateError) as caught:
        verify_record(retired, Label.TASK, "t-1", FIELDS, tag)
    assert caught.value.reason == "retired_key"


def test_the_same_secret_under_another_kid_does_not_verify() -> None:
    """The key id is authenticated too: relabelling a tag's kid breaks it."""
    twin = KeySet(Purpose.STATE, [NEW, SymmetricKey("state-twin", Purpose.STATE, SECRET)])
    tag = sign_record(KeySet(Purpose.STATE, [NEW]), Label.TASK, "t-1", FIELDS)
    relabelled = "state-twin:" + tag.partition(":")[2]
    with pytest.raises(StoredStateError) as caught:
        verify_record(twin, Label.TASK, "t-1", FIELDS, relabelled)
    assert caught.value.reason == "bad_mac"


def test_keys_of_another_purpose_are_refused() -> None:
    """Only state keys sign or verify stored records (a key serves one purpose)."""
    token = KeySet(Purpose.TOKEN, [SymmetricKey("token-1", Purpose.TOKEN, SECRET)])
    with pytest.raises(KeyRingError):
        sign_record(token, Label.TASK, "t-1", FIELDS)
    with pytest.raises(KeyRingError):
        verify_record(token, Label.TASK, "t-1", FIELDS, "token-1:" + "A" * 43)


def test_no_refusal_shows_a_stored_value_or_the_key() -> None:
    """Error messages name the record type and the check, never a value or key material."""
    tag = sign_record(KEYS, Label.TASK, "t-1", FIELDS)
    for bad in (None, "junk", tag):
        with pytest.raises(StoredStateError) as caught:
            verify_record(KEYS, Label.TASK, "t-1", {**FIELDS, "owner": "sekrit-value"}, bad)
        text = str(caught.value)
        assert "sekrit" not in text
        assert "acme" not in text
        assert base64.b64encode(SECRET).decode() not in text
        assert SECRET.decode("latin-1") not in text
