"""The sealed envelope's wire format (:mod:`security.sealing`), read strictly.

``tg1.<header>.<nonce + ciphertext + GCM tag>.<signature or empty>``, base64url without
padding. Only the canonical encoding of each part is accepted and the header must hold
exactly the expected fields with the expected types, so that no byte of an envelope can
change without a refusal. Parsing here authenticates nothing: the header is trusted only
once the AEAD tag over it has been checked (:mod:`security.sealing`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from security.errors import NotSealedError, SealError

__all__ = ["MAX_HEADER", "PREFIX", "Parts", "b64d", "b64e", "parse_header", "split_envelope"]

PREFIX = b"tg1."
MAX_HEADER = 1024  # encoded header bytes; ids and names are short, refuse anything bigger

_HEADER_FIELDS = frozenset({"v", "kid", "skid", "tid", "tn", "iat", "exp"})


@dataclass(frozen=True)
class Parts:
    """An envelope cut into its parts, with its header parsed (not yet authenticated)."""

    data: bytes
    header_b64: bytes
    body_b64: bytes
    sig_b64: bytes
    header_raw: bytes
    header: dict[str, Any]

    @property
    def signed(self) -> bytes:
        """The bytes the signature covers: ``tg1.<header>.<body>``."""
        return self.data[: len(PREFIX) + len(self.header_b64) + 1 + len(self.body_b64)]


def split_envelope(data: bytes) -> Parts:
    """The envelope's parts and its strictly parsed (not yet authenticated) header."""
    if not data.startswith(PREFIX):
        raise NotSealedError("not a sealed envelope", reason="not_sealed")
    parts = data[len(PREFIX) :].split(b".")
    if len(parts) != 3:
        raise SealError("malformed envelope", reason="malformed")
    header_b64, body_b64, sig_b64 = parts
    if len(header_b64) > MAX_HEADER:
        raise SealError("envelope header too large", reason="bad_header")
    header_raw = b64d(header_b64)
    return Parts(data, header_b64, body_b64, sig_b64, header_raw, parse_header(header_raw))


def b64e(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def b64d(seg: bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4))
    except (binascii.Error, ValueError):
        raise SealError("malformed envelope", reason="malformed") from None
    # The decoder skips stray characters and ignores spare low bits; only the canonical
    # encoding is accepted, so that no byte of an envelope can change without refusal.
    if b64e(raw) != seg:
        raise SealError("malformed envelope", reason="malformed")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_header(raw: bytes) -> dict[str, Any]:
    """Strictly parse the (not yet authenticated) header: exact fields, exact types."""
    try:
        h = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise SealError("malformed envelope header", reason="bad_header") from None
    if not (
        isinstance(h, dict)
        and h.keys() == _HEADER_FIELDS
        and type(h["v"]) is int
        and h["v"] == 1
        and isinstance(h["kid"], str)
        and (h["skid"] is None or isinstance(h["skid"], str))
        and isinstance(h["tid"], str)
        and isinstance(h["tn"], str)
        and all(type(h[t]) in (int, float) and math.isfinite(h[t]) for t in ("iat", "exp"))
        and h["exp"] > h["iat"]
    ):
        raise SealError("malformed envelope header", reason="bad_header")
    return h
