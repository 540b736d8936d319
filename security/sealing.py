"""Sealed envelopes: AES-256-GCM, bound to a task, with an optional Ed25519 signature.

Wire format (ASCII, four dot-separated parts, base64url without padding)::

    tg1.<header>.<nonce + ciphertext + GCM tag>.<signature or empty>

``header`` is compact JSON ``{"v": 1, "kid", "skid", "tid", "tn", "iat", "exp"}``: the
broker key id, the signing key id (or null), the task id and name, issue and expiry times
(Unix seconds). Its exact bytes are the AEAD associated data, so the binding and the expiry
are authenticated with the ciphertext. The signature covers ``tg1.<header>.<body>``;
:func:`open_envelope` checks it before anything is decrypted, :func:`open_unverified` leaves
it to :meth:`Unverified.verify` (the worker sends its start gate in between; see there).
The parts and the header are read strictly (canonical encoding, exact fields) by
:mod:`security.seal_format`.

The gateway seals tasks with the newest broker key and signs them; workers (public signing
keys only) verify, and seal results unsigned for the gateway to open.

Every refusal is a :class:`SealError` (or subclass) with its own ``reason``, except a retired
key: :class:`KeyRetiredError` (``key_retired`` for the broker key, ``signer_retired`` for the
signing key). Tampering of any kind gives one opaque message, "envelope failed authentication".
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.errors import (
    KeyRetiredError,
    KeyRingError,
    SealBindingError,
    SealError,
    SealExpiredError,
)
from security.keys import KeySet, SigningKey, SymmetricKey
from security.seal_format import MAX_HEADER, PREFIX, Parts, b64d, b64e, split_envelope

__all__ = [
    "CLOCK_SKEW",
    "MAX_HEADER",
    "PREFIX",
    "Opened",
    "Unverified",
    "open_bound",
    "open_envelope",
    "open_unverified",
    "seal",
]

CLOCK_SKEW = 30.0  # seconds an envelope's iat may lie in the future (clocks drift)
_NONCE = 12  # 96-bit GCM nonce, fresh from os.urandom for every message
_TAG = 16
_FAILED = "envelope failed authentication"


@dataclass(frozen=True)
class Opened:
    """An authenticated, unexpired envelope. ``repr`` never shows the plaintext."""

    plaintext: bytes = field(repr=False)
    task_id: str
    task_name: str
    kid: str
    signer_kid: str | None
    iat: float
    exp: float

    def check_binding(self, task_id: str, task_name: str) -> None:
        """Refuse the envelope unless it was sealed for this task id and task name."""
        if self.task_id != task_id:
            raise SealBindingError(
                "envelope is bound to another task id", reason="task_id_mismatch"
            )
        if self.task_name != task_name:
            raise SealBindingError(
                "envelope is bound to another task name", reason="task_name_mismatch"
            )


def seal(
    plaintext: bytes,
    *,
    task_id: str,
    task_name: str,
    keys: KeySet[SymmetricKey],
    signer: SigningKey | None,
    ttl: float,
    now: float | None = None,
) -> bytes:
    """Encrypt ``plaintext`` with the newest live key of ``keys``, bound to the task.

    Signs with ``signer`` (which must hold a private key) unless it is None. The envelope
    expires ``ttl`` seconds after ``now``.
    """
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError("ttl must be a positive number of seconds")
    key = keys.current()
    private = None
    if signer is not None:
        if signer.retired:
            raise KeyRetiredError(f"signing key {signer.kid} is retired", reason="signer_retired")
        if signer.private is None:
            raise KeyRingError(
                f"signing key {signer.kid} has no private half here", reason="no_private_key"
            )
        private = signer.private
    iat = time.time() if now is None else now
    header = {
        "v": 1,
        "kid": key.kid,
        "skid": None if signer is None else signer.kid,
        "tid": task_id,
        "tn": task_name,
        "iat": iat,
        "exp": iat + ttl,
    }
    header_raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    header_b64 = b64e(header_raw)
    if len(header_b64) > MAX_HEADER:
        raise SealError(
            "envelope header too large; shorten the task id or name", reason="bad_header"
        )
    nonce = os.urandom(_NONCE)
    body = nonce + AESGCM(key.secret).encrypt(nonce, plaintext, header_raw)
    signed = b"%s%s.%s" % (PREFIX, header_b64, b64e(body))
    signature = b"" if private is None else private.sign(signed)
    return b"%s.%s" % (signed, b64e(signature))


def open_envelope(
    data: bytes,
    *,
    keys: KeySet[SymmetricKey],
    verifiers: KeySet[SigningKey] | None,
    require_signature: bool = True,
    now: float | None = None,
) -> Opened:
    """Authenticate and decrypt an envelope; the caller then checks its binding.

    A signature, if present, must verify against a live key of ``verifiers``; if
    ``require_signature`` it must be present. Raises :class:`SealError` (or a subclass) or
    :class:`KeyRetiredError`; see the module docstring.
    """
    parts = split_envelope(data)
    key = _broker_key(keys, parts.header["kid"])
    signature = _signature(parts, verifiers, require_signature=require_signature)
    if signature is not None:
        signature.check()
    return _decrypt(parts, key, now)


@dataclass(frozen=True)
class Unverified:
    """An envelope authenticated by its AEAD tag under a broker key, decrypted and unexpired,
    whose signature is announced, present and names a live verifying key, but whose
    arithmetic is not checked yet (:func:`open_unverified`).

    Only a holder of a broker key - the gateway, or a worker - can have made it; until
    :meth:`verify` returns, nothing in it may be run, nor any secret it refers to opened.
    """

    _opened: Opened = field(repr=False)
    _signature: _Signature | None = field(repr=False)

    @property
    def task_id(self) -> str:
        return self._opened.task_id

    @property
    def task_name(self) -> str:
        return self._opened.task_name

    @property
    def plaintext(self) -> bytes:
        return self._opened.plaintext

    @property
    def exp(self) -> float:
        return self._opened.exp

    @property
    def iat(self) -> float:
        return self._opened.iat

    def verify(self) -> Opened:
        """Check the signature (``bad_signature`` if it fails); then the envelope is open."""
        if self._signature is not None:
            self._signature.check()
        return self._opened


def open_unverified(
    data: bytes,
    *,
    keys: KeySet[SymmetricKey],
    verifiers: KeySet[SigningKey] | None,
    require_signature: bool = True,
    now: float | None = None,
) -> Unverified:
    """Every check of :func:`open_envelope` but the signature's arithmetic, which
    :meth:`Unverified.verify` does: the same refusals, except that a tampered envelope is
    refused by its AEAD tag (``bad_ciphertext``) before its signature is looked at.

    For a caller with a round trip to make once the envelope is known to come from a key
    holder: it can send it, verify while the other side works, then read the reply.
    """
    parts = split_envelope(data)
    key = _broker_key(keys, parts.header["kid"])
    signature = _signature(parts, verifiers, require_signature=require_signature)
    return Unverified(_decrypt(parts, key, now), signature)


@dataclass(frozen=True)
class _Signature:
    """A signature to check: its bytes, what it covers and the live key that must verify it."""

    public: Ed25519PublicKey
    signature: bytes
    signed: bytes

    def check(self) -> None:
        try:
            self.public.verify(self.signature, self.signed)
        except InvalidSignature:
            raise SealError(_FAILED, reason="bad_signature") from None


def _decrypt(parts: Parts, key: SymmetricKey, now: float | None) -> Opened:
    """Authenticate and decrypt under the header's broker key; check the times."""
    header = parts.header
    body = b64d(parts.body_b64)
    if len(body) < _NONCE + _TAG:
        raise SealError(_FAILED, reason="malformed")
    try:
        plaintext = AESGCM(key.secret).decrypt(body[:_NONCE], body[_NONCE:], parts.header_raw)
    except InvalidTag:
        raise SealError(_FAILED, reason="bad_ciphertext") from None
    # Times are trusted only now that the header is authenticated.
    t = time.time() if now is None else now
    if header["iat"] > t + CLOCK_SKEW:
        raise SealError("envelope issued in the future", reason="not_yet_valid")
    if t >= header["exp"]:
        raise SealExpiredError("envelope expired", reason="expired")
    return Opened(
        plaintext,
        header["tid"],
        header["tn"],
        header["kid"],
        header["skid"],
        header["iat"],
        header["exp"],
    )


def open_bound(
    data: bytes,
    *,
    task_id: str,
    task_name: str,
    keys: KeySet[SymmetricKey],
    verifiers: KeySet[SigningKey] | None,
    require_signature: bool = True,
    now: float | None = None,
) -> Opened:
    """:func:`open_envelope`, then :meth:`Opened.check_binding` with ``task_id``, ``task_name``."""
    opened = open_envelope(
        data, keys=keys, verifiers=verifiers, require_signature=require_signature, now=now
    )
    opened.check_binding(task_id, task_name)
    return opened


def _broker_key(keys: KeySet[SymmetricKey], kid: str) -> SymmetricKey:
    try:
        return keys.get(kid)
    except KeyRetiredError:
        raise KeyRetiredError(
            f"envelope sealed with {keys.purpose} key {kid}, which was retired",
            reason="key_retired",
        ) from None
    except KeyRingError:
        raise SealError("envelope sealed with an unknown key", reason="unknown_kid") from None


def _signature(
    parts: Parts, verifiers: KeySet[SigningKey] | None, *, require_signature: bool
) -> _Signature | None:
    """The signature the envelope must pass (None: unsigned, and allowed to be). Refuses at
    once what needs no arithmetic: missing, stripped or unannounced signatures, unknown or
    retired signers."""
    skid: str | None = parts.header["skid"]
    sig_b64 = parts.sig_b64
    if skid is None:
        if sig_b64:  # a signature the header does not announce: tampered
            raise SealError(_FAILED, reason="bad_signature")
        if require_signature:
            raise SealError("envelope is not signed", reason="missing_signature")
        return None
    if not sig_b64:  # announced but stripped: never accept a claimed signer unverified
        raise SealError("envelope is not signed", reason="missing_signature")
    if verifiers is None:
        raise SealError("envelope is signed but no verifying keys were given", reason="no_verifier")
    try:
        verifier = verifiers.get(skid)
    except KeyRetiredError:
        raise KeyRetiredError(
            f"envelope signed with signing key {skid}, which was retired", reason="signer_retired"
        ) from None
    except KeyRingError:
        raise SealError("envelope signed with an unknown key", reason="unknown_signer") from None
    return _Signature(verifier.public, b64d(sig_b64), parts.signed)
