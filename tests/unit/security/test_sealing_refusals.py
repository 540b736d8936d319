"""Sealed envelopes that ``open_envelope`` refuses.

What is not an envelope, malformed headers, unknown or retired keys, any tampering
(header, nonce, ciphertext, signature), and missing, unannounced or foreign signatures.
"""

from __future__ import annotations

import json

import pytest

from security.errors import KeyRetiredError, NotSealedError
from security.keys import KeySet, SigningKey, SymmetricKey
from security.sealing import MAX_HEADER, open_envelope, seal
from tests.support.envelopes import (
    FAILED,
    NOW,
    SECRET,
    TTL,
    b64d,
    b64e,
    broker,
    flip,
    forge,
    good_header,
    header_of,
    open_signed,
    public_only,
    refused,
    signer,
    swap_part,
    sym,
    verifiers,
)

# ---------------------------------------------------------------- structural refusals


@pytest.mark.parametrize("data", [b"", b"{}", b'{"task": "x"}', b"tg2.a.b.c", b"TG1.a.b.c"])
def test_open_refuses_what_is_not_an_envelope(keys: KeySet[SymmetricKey], data: bytes) -> None:
    """Anything without the tg1. prefix is NotSealedError."""
    with pytest.raises(NotSealedError):
        open_envelope(data, keys=keys, verifiers=None, now=NOW)


@pytest.mark.parametrize("rest", [b"", b"a", b"a.b", b"a.b.c.d"])
def test_open_refuses_the_wrong_number_of_parts(keys: KeySet[SymmetricKey], rest: bytes) -> None:
    """An envelope must have exactly header, body and signature parts."""
    refused("malformed", b"tg1." + rest, keys)


def test_open_refuses_an_oversized_header(keys: KeySet[SymmetricKey]) -> None:
    """A header longer than MAX_HEADER is refused before it is decoded."""
    refused("bad_header", b"tg1." + b"A" * (MAX_HEADER + 4) + b".AAAA.", keys)


@pytest.mark.parametrize("header", [b"A", b"A=AA", b"e30+", b"e31"])
def test_open_refuses_non_canonical_base64(keys: KeySet[SymmetricKey], header: bytes) -> None:
    """Bad length, padding, the standard alphabet or spare bits set: all refused."""
    refused("malformed", b"tg1." + header + b".AAAA.", keys)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"v": 1, "v": 1}',
        b'{"v": NaN}',
        b"\xff\xfe",
        json.dumps(good_header(iat=1e400)).encode(),
    ],
)
def test_open_refuses_a_header_that_is_not_strict_json(
    key: SymmetricKey, keys: KeySet[SymmetricKey], raw: bytes
) -> None:
    """Non-JSON, duplicate keys, NaN/Infinity and invalid UTF-8 headers are refused."""
    refused("bad_header", forge(raw, key), keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": True},
        {"v": 1.0},
        {"kid": 1},
        {"skid": 5},
        {"tid": None},
        {"tn": ["x"]},
        {"iat": "now"},
        {"exp": True},
        {"exp": NOW},
        {"exp": NOW - 1},
        {"extra": 1},
    ],
)
def test_open_refuses_a_header_with_wrong_fields(
    key: SymmetricKey, keys: KeySet[SymmetricKey], changes: dict[str, object]
) -> None:
    """Every header field must be present with its exact type, and exp after iat."""
    refused("bad_header", forge(good_header(**changes), key), keys)


def test_open_refuses_a_header_with_a_missing_field(
    key: SymmetricKey, keys: KeySet[SymmetricKey]
) -> None:
    """A header lacking a field is refused."""
    h = good_header()
    del h["exp"]
    refused("bad_header", forge(h, key), keys)


def test_open_refuses_a_too_short_body(key: SymmetricKey, keys: KeySet[SymmetricKey]) -> None:
    """A body shorter than nonce plus tag is refused."""
    data = forge(good_header(), key).split(b".")
    data[2] = b64e(b"\0" * 27)
    refused("malformed", b".".join(data), keys, require_signature=False)


# ---------------------------------------------------------------- keys


def test_open_refuses_an_unknown_key(sealed: bytes, worker_verifiers: KeySet[SigningKey]) -> None:
    """An envelope sealed with a key not in the ring is refused as unknown_kid."""
    refused("unknown_kid", sealed, broker(sym("broker-2")), verifiers=worker_verifiers)


def test_open_refuses_a_malformed_kid(key: SymmetricKey, keys: KeySet[SymmetricKey]) -> None:
    """A kid that is not even a key id shape is refused as unknown."""
    refused("unknown_kid", forge(good_header(kid="../../x"), key), keys)


def test_open_refuses_a_retired_broker_key(
    sealed: bytes, key: SymmetricKey, worker_verifiers: KeySet[SigningKey]
) -> None:
    """A key retired since sealing gives KeyRetiredError saying it was retired."""
    retired = broker(SymmetricKey(key.kid, key.purpose, key.secret, retired=True), sym("broker-2"))
    with pytest.raises(KeyRetiredError) as info:
        open_signed(sealed, retired, worker_verifiers)
    assert info.value.reason == "key_retired"
    assert "retired" in str(info.value)
    assert "broker-1" in str(info.value)


# ---------------------------------------------------------------- tampering


def test_tampered_header_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A re-encoded header naming another task fails the signature check."""
    h = header_of(sealed)
    h["tn"] = "admin.delete_everything"
    data = swap_part(sealed, 1, b64e(json.dumps(h, separators=(",", ":")).encode()))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_tampered_header_fails_authentication_unsigned(
    key: SymmetricKey, keys: KeySet[SymmetricKey]
) -> None:
    """Without a signature, the AEAD still refuses a changed header (it is the AAD)."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    h = header_of(data)
    h["exp"] = NOW + 10 * TTL
    data = swap_part(data, 1, b64e(json.dumps(h).encode()))
    err = refused("bad_ciphertext", data, keys, require_signature=False)
    assert err.message == FAILED


@pytest.mark.parametrize("at", [0, 11])
def test_tampered_nonce_fails_authentication(
    keys: KeySet[SymmetricKey], at: int, worker_verifiers: KeySet[SigningKey]
) -> None:
    """A changed nonce is refused."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    data = swap_part(data, 2, flip(data.split(b".")[2], at))
    err = refused("bad_ciphertext", data, keys, require_signature=False)
    assert err.message == FAILED


@pytest.mark.parametrize("at", [12, -1])
def test_tampered_ciphertext_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], at: int
) -> None:
    """A changed ciphertext or tag fails the signature check before any decryption."""
    data = swap_part(sealed, 2, flip(sealed.split(b".")[2], at))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_tampered_signature_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A changed signature is refused."""
    data = swap_part(sealed, 3, flip(sealed.split(b".")[3], 5))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_truncated_signature_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A signature of the wrong length is refused."""
    data = swap_part(sealed, 3, b64e(b64d(sealed.split(b".")[3])[:32]))
    refused("bad_signature", data, keys, verifiers=worker_verifiers)


def test_signature_is_checked_before_decrypting(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A body that would not even decrypt is refused by the signature check first."""
    data = swap_part(sealed, 2, b64e(b"\0" * 27))
    refused("bad_signature", data, keys, verifiers=worker_verifiers)


# ---------------------------------------------------------------- signatures


def test_missing_signature_is_refused_when_required(keys: KeySet[SymmetricKey]) -> None:
    """An unsigned envelope is refused where a signature is required (the default)."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    refused("missing_signature", data, keys, verifiers=verifiers(signer()))


def test_stripped_signature_is_refused_even_when_optional(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A header naming a signer with the signature removed is refused."""
    refused(
        "missing_signature",
        swap_part(sealed, 3, b""),
        keys,
        verifiers=worker_verifiers,
        require_signature=False,
    )


def test_unannounced_signature_is_refused(
    key: SymmetricKey, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signature the header does not name is refused as tampering."""
    err = refused(
        "bad_signature", forge(good_header(), key, gateway_signer), keys, require_signature=False
    )
    assert err.message == FAILED


def test_signed_envelope_without_verifiers_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey]
) -> None:
    """A signature that cannot be checked is not silently accepted."""
    refused("no_verifier", sealed, keys, verifiers=None, require_signature=False)


def test_signature_by_an_unknown_key_is_refused(sealed: bytes, keys: KeySet[SymmetricKey]) -> None:
    """A signer kid not in verifiers is refused."""
    refused("unknown_signer", sealed, keys, verifiers=verifiers(signer("signing-2")))


def test_signature_by_a_malformed_signer_kid_is_refused(
    key: SymmetricKey, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signer kid that is not a key id shape is refused as unknown."""
    data = forge(good_header(skid="a/b"), key, gateway_signer)
    refused("unknown_signer", data, keys, verifiers=verifiers(gateway_signer))


def test_signature_from_a_key_not_in_verifiers_is_refused(
    keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """Another key that reuses a trusted kid does not verify."""
    impostor = signer(gateway_signer.kid)
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=impostor, ttl=TTL, now=NOW)
    err = refused("bad_signature", data, keys, verifiers=verifiers(public_only(gateway_signer)))
    assert err.message == FAILED


def test_signature_by_a_retired_key_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signing key retired since signing gives KeyRetiredError saying so."""
    retired = SigningKey(gateway_signer.kid, gateway_signer.public, None, retired=True)
    with pytest.raises(KeyRetiredError) as info:
        open_signed(sealed, keys, verifiers(retired, signer("signing-2")))
    assert info.value.reason == "signer_retired"
    assert "retired" in str(info.value)
