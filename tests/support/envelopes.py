"""Sealed envelopes for the sealing tests: keys, forged envelopes and damaged ones.

The task an envelope is bound to, broker and signing keys, opening and refusing, an
envelope forged around any header, and a part of one swapped or a bit flipped.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.errors import SealError
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.sealing import Opened, open_envelope

NOW = 1_750_000_000.0
TTL = 300.0
TASK_ID = "7d1e5a0c-2f5b-4a44-9a3e-0f1c2b3a4d5e"
TASK_NAME = "reports.render"
SECRET = b'{"to": "ops@example.com", "api_key": "sk-very-secret"}'
FAILED = "envelope failed authentication"


def broker(*keys: SymmetricKey) -> KeySet[SymmetricKey]:
    """A broker key ring of ``keys``, oldest first."""
    return KeySet(Purpose.BROKER, keys)


def sym(kid: str, *, retired: bool = False) -> SymmetricKey:
    """A fresh random broker key."""
    return SymmetricKey(kid, Purpose.BROKER, os.urandom(32), retired=retired)


def signer(kid: str = "signing-1", *, retired: bool = False) -> SigningKey:
    """A fresh Ed25519 signing key with its private half."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid, private.public_key(), private, retired=retired)


def public_only(key: SigningKey) -> SigningKey:
    """``key`` without its private half, as a worker holds it."""
    return SigningKey(key.kid, key.public, None, retired=key.retired)


def verifiers(*keys: SigningKey) -> KeySet[SigningKey]:
    """A signing ring of ``keys`` to verify with."""
    return KeySet(Purpose.SIGNING, keys)


def b64e(raw: bytes) -> bytes:
    """Unpadded base64url, as envelope segments are written."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def b64d(seg: bytes) -> bytes:
    """Decode an unpadded base64url segment."""
    return base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4))


def open_signed(
    data: bytes,
    keys: KeySet[SymmetricKey],
    worker_verifiers: KeySet[SigningKey] | None,
    now: float = NOW + 1,
) -> Opened:
    """Open ``data`` as a worker does, one second after ``NOW`` unless ``now``."""
    return open_envelope(data, keys=keys, verifiers=worker_verifiers, now=now)


def refused(reason: str, data: bytes, keys: KeySet[SymmetricKey], **kwargs: object) -> SealError:
    """Open ``data`` and return the SealError it must raise with ``reason``."""
    kwargs.setdefault("verifiers", None)
    kwargs.setdefault("now", NOW + 1)
    with pytest.raises(SealError) as info:
        open_envelope(data, keys=keys, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason, info.value.message
    return info.value


def forge(
    header: dict[str, object] | bytes,
    key: SymmetricKey,
    sign_with: SigningKey | None = None,
    plaintext: bytes = SECRET,
) -> bytes:
    """Build an envelope around an arbitrary header, encrypted (and signed) correctly."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    nonce = os.urandom(12)
    body = nonce + AESGCM(key.secret).encrypt(nonce, plaintext, raw)
    signed = b"tg1." + b64e(raw) + b"." + b64e(body)
    sig = b"" if sign_with is None or sign_with.private is None else sign_with.private.sign(signed)
    return signed + b"." + b64e(sig)


def header_of(data: bytes) -> dict[str, object]:
    """The decoded header of envelope ``data``."""
    doc: dict[str, object] = json.loads(b64d(data.split(b".")[1]))
    return doc


def good_header(**changes: object) -> dict[str, object]:
    """A valid header for the test task, with ``changes``."""
    h: dict[str, object] = {
        "v": 1,
        "kid": "broker-1",
        "skid": None,
        "tid": TASK_ID,
        "tn": TASK_NAME,
        "iat": NOW,
        "exp": NOW + TTL,
    }
    h.update(changes)
    return h


def swap_part(data: bytes, index: int, new: bytes) -> bytes:
    """Envelope ``data`` with its ``index``-th dot-separated part replaced by ``new``."""
    parts = data.split(b".")
    parts[index] = new
    return b".".join(parts)


def flip(segment: bytes, at: int) -> bytes:
    """``segment`` (base64url) with one bit of byte ``at`` flipped."""
    raw = bytearray(b64d(segment))
    raw[at] ^= 0x01
    return b64e(bytes(raw))
