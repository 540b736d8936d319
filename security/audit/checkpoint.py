"""Signed checkpoints of the audit chain, kept outside Redis to catch a cut tail.

A checkpoint pins the head ``(seq, mac)`` of a stream at a time, signed with the
gateway's Ed25519 key, so an auditor holding only the public key can later prove that
the stream still reaches that ``seq`` with that ``mac``. It is exported as a small JSON
object::

    {"v": 1, "stream": "tg:audit", "seq": 42, "mac": "<hex>", "time": 1.7e9,
     "kid": "signing-1", "sig": "<base64url>"}
"""

from __future__ import annotations

import base64
import json
import math
import re
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature

from security.audit.chain import Head, parse_head
from security.errors import AuditError, KeyRingError
from security.keys import KeySet, Purpose, SigningKey, valid_kid

__all__ = ["Checkpoint", "sign_checkpoint", "verify_checkpoint"]

_DOMAIN: Final = "taskgate.audit.checkpoint.v1"
_VERSION: Final = 1
_SIG_RE: Final = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 bytes, base64url without padding
_KEYS: Final = frozenset({"v", "stream", "seq", "mac", "time", "kid", "sig"})
_MAX_STREAM_CHARS: Final = 128


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified (or freshly signed) checkpoint."""

    stream: str
    seq: int
    mac: str
    time: float
    kid: str
    sig: str

    @property
    def head(self) -> Head:
        """The pinned ``(seq, mac)``."""
        return Head(self.seq, self.mac)

    def to_dict(self) -> dict[str, object]:
        """The JSON-ready form that :func:`verify_checkpoint` accepts back."""
        return {
            "v": _VERSION,
            "stream": self.stream,
            "seq": self.seq,
            "mac": self.mac,
            "time": self.time,
            "kid": self.kid,
            "sig": self.sig,
        }


def _signed_bytes(stream: str, head: Head, time: float, kid: str) -> bytes:
    values = [_DOMAIN, stream, str(head.seq), head.mac, repr(time), kid]
    return json.dumps(values, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sign_checkpoint(
    head: Head, signer: SigningKey, *, stream: str, now: float | None = None
) -> Checkpoint:
    """Sign ``head`` of ``stream`` at ``now`` with ``signer``'s private key."""
    if signer.private is None:
        raise KeyRingError(f"signing key {signer.kid} has no private half", reason="no_private_key")
    when = float(_time.time() if now is None else now)
    sig = signer.private.sign(_signed_bytes(stream, head, when, signer.kid))
    encoded = base64.urlsafe_b64encode(sig).rstrip(b"=").decode("ascii")
    return Checkpoint(stream, head.seq, head.mac, when, signer.kid, encoded)


def _bad() -> AuditError:
    return AuditError("audit checkpoint is malformed", reason="bad_checkpoint")


def _parse(raw: Mapping[str, object] | str | bytes) -> Checkpoint:
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise _bad() from exc
    if not isinstance(raw, Mapping) or set(raw) != _KEYS:
        raise _bad()
    if type(raw["v"]) is not int or raw["v"] != _VERSION:  # True == 1, but is no version
        raise _bad()
    stream, seq, mac, when = raw["stream"], raw["seq"], raw["mac"], raw["time"]
    kid, sig = raw["kid"], raw["sig"]
    if not (isinstance(stream, str) and 0 < len(stream) <= _MAX_STREAM_CHARS):
        raise _bad()
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(mac, str):
        raise _bad()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise _bad()
    if not (isinstance(kid, str) and valid_kid(kid) and isinstance(sig, str)):
        raise _bad()
    if not _SIG_RE.fullmatch(sig):
        raise _bad()
    try:
        head = parse_head(f"{seq} {mac}")  # the same shape rules as the head key
    except AuditError as exc:
        raise _bad() from exc
    return Checkpoint(stream, head.seq, head.mac, float(when), kid, sig)


def verify_checkpoint(
    cp: Mapping[str, object] | str | bytes, verifiers: KeySet[SigningKey]
) -> Checkpoint:
    """Check a checkpoint's shape and signature; return it parsed.

    ``cp`` is the dict from :func:`~security.audit.make_checkpoint` or its JSON text.
    Any key in ``verifiers`` may have signed it, retired ones included: a checkpoint is
    evidence about the past and must outlive the key rotation that followed it.
    Raises :class:`AuditError` with ``reason`` ``bad_checkpoint``, ``unknown_kid`` or
    ``bad_signature``.
    """
    if verifiers.purpose is not Purpose.SIGNING:
        raise KeyRingError(f"{verifiers.purpose} keys cannot verify checkpoints", reason="purpose")
    checkpoint = _parse(cp)
    key = next((k for k in verifiers if k.kid == checkpoint.kid), None)
    if key is None:
        raise AuditError("audit checkpoint signed by an unknown key", reason="unknown_kid")
    sig = base64.urlsafe_b64decode(checkpoint.sig + "==")
    msg = _signed_bytes(checkpoint.stream, checkpoint.head, checkpoint.time, checkpoint.kid)
    try:
        key.public.verify(sig, msg)
    except InvalidSignature as exc:
        raise AuditError("audit checkpoint signature is invalid", reason="bad_signature") from exc
    return checkpoint
