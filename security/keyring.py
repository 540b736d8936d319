"""The loaded key ring of one role, and what each role holds.

What a role loads (:data:`ROLE_PURPOSES`), from :mod:`security.keystore` or the other
sources, always through :func:`build_ring`:

* **gateway**: broker, vault, token, state, signing (private key), its own audit key
  (``audit-gateway``) and the worker's and operator's audit keys, which verify the chain
  (``GET /v1/admin/audit/verify``) and never MAC a record here;
* **worker**: broker, vault, its own audit key (``audit-worker``) and only the *public*
  half of the signing keys: never a signing private key, a token, state or other role's
  audit key;
* **operator**: everything (key management, dead letters, checkpoints, ``audit verify``);
  its own records are MACed with ``audit-operator``.

A ring's :attr:`KeyRing.audit` is the one audit key set its role appends with.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from security.errors import KeyRingError
from security.keyfiles import ROTATE_HINT
from security.keys import (
    AUDIT_PURPOSES,
    MIN_KEY_BYTES,
    KeySet,
    Purpose,
    Role,
    SigningKey,
    SymmetricKey,
)

__all__ = ["ROLE_PURPOSES", "KeyRing", "Raw", "build_ring"]

_AUDIT_ALL: Final = frozenset(AUDIT_PURPOSES.values())
ROLE_PURPOSES: Final[dict[Role, frozenset[Purpose]]] = {
    "gateway": frozenset(Purpose),
    "worker": frozenset({Purpose.BROKER, Purpose.VAULT, Purpose.AUDIT_WORKER, Purpose.SIGNING}),
    "operator": frozenset(Purpose),
}
_AES: Final = frozenset({Purpose.BROKER, Purpose.VAULT})  # AES-256 takes exactly 32 bytes


@dataclass(frozen=True)
class KeyRing:
    """One :class:`KeySet` per purpose (empty where the role holds none); ``repr`` shows
    key ids only."""

    broker: KeySet[SymmetricKey]
    vault: KeySet[SymmetricKey]
    token: KeySet[SymmetricKey]
    signing: KeySet[SigningKey]
    state: KeySet[SymmetricKey]
    audit_gateway: KeySet[SymmetricKey]
    audit_worker: KeySet[SymmetricKey]
    audit_operator: KeySet[SymmetricKey]
    role: Role

    @property
    def audit(self) -> KeySet[SymmetricKey]:
        """The audit keys this role MACs its own records with."""
        return self.purpose(AUDIT_PURPOSES[self.role])

    def audit_keys(self) -> list[KeySet[SymmetricKey]]:
        """Every audit key set held (one per role that has keys here), for verification."""
        return [s for s in (self.audit_gateway, self.audit_worker, self.audit_operator) if len(s)]

    def key_sets(self) -> list[KeySet[SymmetricKey] | KeySet[SigningKey]]:
        """Every purpose's key set, in :class:`Purpose` order (empty where not held)."""
        return [self.signing if p is Purpose.SIGNING else self.purpose(p) for p in Purpose]

    def purpose(self, purpose: Purpose) -> KeySet[SymmetricKey]:
        """The symmetric key set of ``purpose`` (signing keys are :attr:`signing`)."""
        if purpose is Purpose.SIGNING:
            raise KeyRingError("signing keys are not symmetric; use .signing", reason="purpose")
        found: KeySet[SymmetricKey] = getattr(self, str(purpose).replace("-", "_"))
        return found


@dataclass
class Raw:
    """One key as read from a source, before it is checked."""

    kid: str
    where: str  # the file or variable holding it, for error messages
    secret: bytes | None = None  # symmetric secret, or the raw Ed25519 private key
    public: bytes | None = None
    public_where: str = ""
    retired: bool = False


def build_ring(raws: dict[Purpose, list[Raw]], role: Role, source: str, fix: str) -> KeyRing:
    """Check every key of ``role``'s purposes and build its ring.

    Refuses a purpose the role needs with no live key (naming ``source`` and ``fix``).
    """
    for purpose in (p for p in Purpose if p in ROLE_PURPOSES[role]):
        if not any(not r.retired for r in raws.get(purpose, [])):
            raise KeyRingError(f"no live {purpose} key in {source}; {fix}", reason="missing_key")

    def symmetric(purpose: Purpose) -> KeySet[SymmetricKey]:
        if purpose not in ROLE_PURPOSES[role]:
            return KeySet(purpose, [])  # a source may hold more than the role may load
        return KeySet(purpose, [_symmetric(purpose, r) for r in raws.get(purpose, [])])

    signing = [_signing(r, role) for r in raws.get(Purpose.SIGNING, [])]
    return KeyRing(
        broker=symmetric(Purpose.BROKER),
        vault=symmetric(Purpose.VAULT),
        token=symmetric(Purpose.TOKEN),
        signing=KeySet(Purpose.SIGNING, signing),
        state=symmetric(Purpose.STATE),
        audit_gateway=symmetric(Purpose.AUDIT_GATEWAY),
        audit_worker=symmetric(Purpose.AUDIT_WORKER),
        audit_operator=symmetric(Purpose.AUDIT_OPERATOR),
        role=role,
    )


def _symmetric(purpose: Purpose, raw: Raw) -> SymmetricKey:
    secret = raw.secret or b""
    if len(secret) < MIN_KEY_BYTES or (purpose in _AES and len(secret) != MIN_KEY_BYTES):
        need = "exactly 256" if purpose in _AES else "at least 256"
        raise KeyRingError(
            f"{raw.where}: {purpose} key is {len(secret) * 8} bits, {need} are required; "
            f"{ROTATE_HINT}",
            reason="key_too_short" if len(secret) < MIN_KEY_BYTES else "bad_key_length",
        )
    return SymmetricKey(raw.kid, purpose, secret, retired=raw.retired)


def _signing(raw: Raw, role: Role) -> SigningKey:
    """The key pair (public half checked if given), or a worker's public key."""
    if role == "worker":
        public_raw = _exact32(raw.public or b"", raw.public_where)
        public = Ed25519PublicKey.from_public_bytes(public_raw)
        return SigningKey(raw.kid, public, None, retired=raw.retired)
    if raw.secret is None:
        raise KeyRingError(
            f"{raw.public_where}: the {role} needs the private key of {raw.kid}; "
            "add it next to the public key",
            reason="missing_key",
        )
    private = Ed25519PrivateKey.from_private_bytes(_exact32(raw.secret, raw.where))
    derived = private.public_key().public_bytes_raw()
    if raw.public is not None and not hmac.compare_digest(
        derived, _exact32(raw.public, raw.public_where)
    ):
        raise KeyRingError(
            f"{raw.public_where}: public key {raw.kid} does not match its private key; "
            "restore the matching pair or rotate",
            reason="key_mismatch",
        )
    return SigningKey(raw.kid, private.public_key(), private, retired=raw.retired)


def _exact32(material: bytes, where: str) -> bytes:
    if len(material) != 32:
        raise KeyRingError(
            f"{where}: an Ed25519 key is 256 bits, this one is {len(material) * 8}; {ROTATE_HINT}",
            reason="key_too_short" if len(material) < 32 else "bad_key_length",
        )
    return material
