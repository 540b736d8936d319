"""Property tests for sealed envelopes: round trips and single-byte tampering."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from security.errors import SealError
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.sealing import open_envelope, seal

NOW = 1_750_000_000.0
KEYS = KeySet(Purpose.BROKER, [SymmetricKey("broker-1", Purpose.BROKER, os.urandom(32))])
_PRIVATE = Ed25519PrivateKey.generate()
SIGNER = SigningKey("signing-1", _PRIVATE.public_key(), _PRIVATE)
VERIFIERS = KeySet(Purpose.SIGNING, [SigningKey("signing-1", _PRIVATE.public_key())])

ids = st.text(max_size=40)  # any Unicode; JSON escaping may grow it up to 12x
payloads = st.binary(max_size=2048)


@given(plaintext=payloads, task_id=ids, task_name=ids, signed=st.booleans())
def test_seal_then_open_round_trips(
    plaintext: bytes, task_id: str, task_name: str, signed: bool
) -> None:
    """Whatever the bytes, id and name, opening returns exactly what was sealed."""
    data = seal(
        plaintext,
        task_id=task_id,
        task_name=task_name,
        keys=KEYS,
        signer=SIGNER if signed else None,
        ttl=60,
        now=NOW,
    )
    opened = open_envelope(
        data, keys=KEYS, verifiers=VERIFIERS, require_signature=signed, now=NOW + 1
    )
    opened.check_binding(task_id, task_name)
    assert opened.plaintext == plaintext
    assert opened.signer_kid == ("signing-1" if signed else None)


def replacements(byte: int) -> set[int]:
    """Several different values for one byte: bit flips, separators, other alphabet."""
    return {byte ^ 0x01, byte ^ 0x20, byte ^ 0x80, ord("A"), ord("."), ord("="), ord("_")} - {byte}


def assert_every_byte_change_fails(data: bytes, *, signed: bool) -> None:
    for at, original in enumerate(data):
        for value in replacements(original):
            tampered = data[:at] + bytes([value]) + data[at + 1 :]
            try:
                open_envelope(
                    tampered, keys=KEYS, verifiers=VERIFIERS, require_signature=signed, now=NOW
                )
            except SealError:
                continue
            raise AssertionError(f"byte {at} changed to {value} still opened")


@settings(max_examples=15, deadline=None)
@given(plaintext=st.binary(max_size=64), task_id=ids, task_name=ids)
def test_every_single_byte_change_of_a_signed_envelope_fails(
    plaintext: bytes, task_id: str, task_name: str
) -> None:
    """Changing any one byte of a signed envelope, to any of several values, is refused."""
    data = seal(
        plaintext, task_id=task_id, task_name=task_name, keys=KEYS, signer=SIGNER, ttl=60, now=NOW
    )
    assert_every_byte_change_fails(data, signed=True)


@settings(max_examples=15, deadline=None)
@given(plaintext=st.binary(max_size=64), task_id=ids, task_name=ids)
def test_every_single_byte_change_of_an_unsigned_envelope_fails(
    plaintext: bytes, task_id: str, task_name: str
) -> None:
    """Without a signature the AEAD alone refuses every one-byte change."""
    data = seal(
        plaintext, task_id=task_id, task_name=task_name, keys=KEYS, signer=None, ttl=60, now=NOW
    )
    assert_every_byte_change_fails(data, signed=False)
