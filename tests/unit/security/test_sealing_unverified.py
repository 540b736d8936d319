"""Sealed envelopes opened before their signature is checked.

``open_unverified`` then ``verify`` gives what ``open_envelope`` gives, refuses a bad or
foreign signature, and refuses tampering by the AEAD tag first.
"""

from __future__ import annotations

import json

import pytest

from security.errors import KeyRetiredError, SealError
from security.keys import KeySet, SigningKey, SymmetricKey
from security.sealing import open_unverified, seal
from tests.support.envelopes import (
    FAILED,
    NOW,
    SECRET,
    TASK_ID,
    TASK_NAME,
    TTL,
    b64e,
    broker,
    flip,
    forge,
    good_header,
    header_of,
    open_signed,
    public_only,
    signer,
    swap_part,
    sym,
    verifiers,
)

# ---------------------------------------------------------------- signature checked last


def test_open_unverified_then_verify_gives_what_open_envelope_gives(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """Decrypted first, the signature checked on verify(): the same opened envelope."""
    pending = open_unverified(sealed, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    assert (pending.task_id, pending.task_name, pending.plaintext) == (TASK_ID, TASK_NAME, SECRET)
    assert pending.exp == NOW + TTL
    assert pending.verify() == open_signed(sealed, keys, worker_verifiers)
    assert SECRET not in repr(pending).encode()


def test_open_unverified_opens_an_unsigned_envelope_where_none_is_required(
    keys: KeySet[SymmetricKey],
) -> None:
    """Nothing to verify (a result, sealed unsigned by a worker): verify() just opens it."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    pending = open_unverified(data, keys=keys, verifiers=None, require_signature=False, now=NOW)
    assert pending.verify().plaintext == SECRET


@pytest.mark.parametrize("at", [5, -1])
def test_a_bad_signature_is_refused_by_verify(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], at: int
) -> None:
    """An envelope whose AEAD tag holds but whose signature does not - only a holder of the
    broker key can make one - opens unverified and is refused by verify()."""
    data = swap_part(sealed, 3, flip(sealed.split(b".")[3], at))
    pending = open_unverified(data, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    with pytest.raises(SealError) as info:
        pending.verify()
    assert info.value.reason == "bad_signature"
    assert info.value.message == FAILED


def test_a_signature_by_another_key_is_refused_by_verify(
    keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A worker's forgery (broker key, but not the gateway's signing key) fails verify()."""
    impostor = signer(gateway_signer.kid)
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=impostor, ttl=TTL, now=NOW)
    pending = open_unverified(
        data, keys=keys, verifiers=verifiers(public_only(gateway_signer)), now=NOW + 1
    )
    with pytest.raises(SealError) as info:
        pending.verify()
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("part", [1, 2])
def test_open_unverified_refuses_tampering_by_the_aead_tag_first(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], part: int
) -> None:
    """A changed header or body never gets as far as the signature: bad_ciphertext."""
    if part == 1:
        h = header_of(sealed)
        h["tn"] = "admin.delete_everything"
        data = swap_part(sealed, 1, b64e(json.dumps(h, separators=(",", ":")).encode()))
    else:
        data = swap_part(sealed, 2, flip(sealed.split(b".")[2], 12))
    with pytest.raises(SealError) as info:
        open_unverified(data, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    assert info.value.reason == "bad_ciphertext"
    assert info.value.message == FAILED


def test_open_unverified_refuses_what_needs_no_arithmetic(
    sealed: bytes,
    key: SymmetricKey,
    keys: KeySet[SymmetricKey],
    worker_verifiers: KeySet[SigningKey],
    gateway_signer: SigningKey,
) -> None:
    """Missing, stripped or unannounced signatures, unknown or retired signers, expiry and
    unknown broker keys are refused at once, before verify() could be called."""
    unsigned = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    retired = verifiers(SigningKey(gateway_signer.kid, gateway_signer.public, None, retired=True))
    cases: list[tuple[str, bytes, KeySet[SymmetricKey], KeySet[SigningKey], float]] = [
        ("missing_signature", unsigned, keys, worker_verifiers, NOW + 1),
        ("missing_signature", swap_part(sealed, 3, b""), keys, worker_verifiers, NOW + 1),
        ("bad_signature", forge(good_header(), key, gateway_signer), keys, worker_verifiers, NOW),
        ("unknown_signer", sealed, keys, verifiers(signer("signing-2")), NOW + 1),
        ("signer_retired", sealed, keys, retired, NOW + 1),
        ("expired", sealed, keys, worker_verifiers, NOW + TTL),
        ("unknown_kid", sealed, broker(sym("broker-2")), worker_verifiers, NOW + 1),
    ]
    for reason, data, broker_keys, signing, now in cases:
        with pytest.raises((SealError, KeyRetiredError)) as info:
            open_unverified(data, keys=broker_keys, verifiers=signing, now=now)
        assert info.value.reason == reason
