"""Key types shared by sealing, the vault, tokens and the audit chain.

A :class:`KeySet` holds the keys of one purpose ordered oldest -> newest: seal/sign
with the newest live key, open/verify with any live one, rotate by adding, retire
to refuse. Loading and storing key sets lives in :mod:`security.keystore`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from security.errors import KeyRetiredError, KeyRingError

__all__ = [
    "AUDIT_PURPOSES",
    "MIN_KEY_BYTES",
    "ROLES",
    "KeySet",
    "Purpose",
    "Role",
    "SigningKey",
    "SymmetricKey",
    "audit_writer",
    "valid_kid",
]

MIN_KEY_BYTES = 32  # 256 bits; anything shorter is refused at load time
_KID_RE = re.compile(r"^[a-z]+-[0-9]{8}T[0-9]{6}Z?-[0-9a-f]{8}$|^[A-Za-z0-9_-]{1,64}$")


class Purpose(enum.StrEnum):
    """Every key serves exactly one purpose; a key is never reused across purposes."""

    BROKER = "broker"  # AES-256-GCM for task messages and results
    VAULT = "vault"  # AES-256-GCM for secret values behind references
    # HMAC-SHA256 for the audit chain, one key per writing role: a record verifies only as
    # the record of the role whose key MACed it, so a worker cannot write as the gateway.
    AUDIT_GATEWAY = "audit-gateway"
    AUDIT_WORKER = "audit-worker"
    AUDIT_OPERATOR = "audit-operator"
    TOKEN = "token"  # noqa: S105 - a purpose name, not a password. HMAC-SHA256 (HS256) for access tokens
    SIGNING = "signing"  # Ed25519: gateway signs envelopes, workers hold the public half
    STATE = "state"  # HMAC-SHA256 over stored state the gateway acts on; never on a worker


Role = Literal["gateway", "worker", "operator"]
ROLES: Final[tuple[Role, ...]] = ("gateway", "worker", "operator")

#: The audit key each role MACs its own records with.
AUDIT_PURPOSES: Final[dict[Role, Purpose]] = {
    "gateway": Purpose.AUDIT_GATEWAY,
    "worker": Purpose.AUDIT_WORKER,
    "operator": Purpose.AUDIT_OPERATOR,
}
_AUDIT_WRITERS: Final[dict[Purpose, Role]] = {p: r for r, p in AUDIT_PURPOSES.items()}


def audit_writer(purpose: Purpose) -> Role | None:
    """The role whose audit records keys of ``purpose`` MAC (None: not an audit purpose)."""
    return _AUDIT_WRITERS.get(purpose)


def valid_kid(kid: str) -> bool:
    """True if ``kid`` has the shape of a key id (never used to look anything up on disk)."""
    return bool(_KID_RE.fullmatch(kid))


@dataclass(frozen=True)
class SymmetricKey:
    """A secret key with its id. ``repr`` never shows the material."""

    kid: str
    purpose: Purpose
    secret: bytes = field(repr=False)
    retired: bool = False

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise KeyRingError(
                f"{self.purpose} key {self.kid} is {len(self.secret) * 8} bits; 256 are required",
                reason="key_too_short",
            )
        if not valid_kid(self.kid):
            raise KeyRingError("malformed key id", reason="bad_kid")


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key. Workers hold only ``public``; ``private`` is None there."""

    kid: str
    public: Ed25519PublicKey = field(repr=False)
    private: Ed25519PrivateKey | None = field(default=None, repr=False)
    retired: bool = False

    @property
    def purpose(self) -> Purpose:
        return Purpose.SIGNING


K = TypeVar("K", SymmetricKey, SigningKey)


class KeySet(Generic[K]):
    """The keys of one purpose, oldest -> newest."""

    def __init__(self, purpose: Purpose, keys: Iterable[K]) -> None:
        self.purpose = purpose
        self._keys: list[K] = list(keys)
        kids = [k.kid for k in self._keys]
        if len(set(kids)) != len(kids):
            raise KeyRingError(f"duplicate key id in {purpose} keys", reason="duplicate_kid")
        for k in self._keys:
            if not valid_kid(k.kid):
                raise KeyRingError("malformed key id", reason="bad_kid")
            if k.purpose != purpose:
                raise KeyRingError(f"{k.kid} is a {k.purpose} key, not {purpose}", reason="purpose")

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({self.purpose}, kids={[k.kid for k in self._keys]})"

    def current(self) -> K:
        """The newest live key: the one to seal or sign with."""
        for key in reversed(self._keys):
            if not key.retired:
                return key
        raise KeyRingError(f"no live {self.purpose} key; run `taskgate keys init`", reason="no_key")

    def get(self, kid: str) -> K:
        """The key named ``kid`` if it is known and live.

        Raises :class:`KeyRetiredError` for a retired key and :class:`KeyRingError` for an
        unknown or malformed id. The id is compared, never used as a path or a pattern.
        """
        for key in self._keys:  # loaded ids are well-formed: an equal one is too
            if key.kid == kid:
                if key.retired:
                    raise KeyRetiredError(
                        f"{self.purpose} key {kid} is retired", reason="key_retired"
                    )
                return key
        if not valid_kid(kid):
            raise KeyRingError("malformed key id", reason="bad_kid")
        raise KeyRingError(f"unknown {self.purpose} key id", reason="unknown_kid")

    def live(self) -> list[K]:
        """Every key that may still open or verify, oldest first."""
        return [k for k in self._keys if not k.retired]
