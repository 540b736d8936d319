"""Stored credentials: client secrets (scrypt) and the admin token (SHA-256).

Neither is ever stored in the clear. The two hashes differ on purpose:

* a client secret is hashed with scrypt (n=2**15, r=8, p=1, 16-byte salt) so a stolen client
  table costs an attacker memory-hard work per guess, whatever the secret;
* the admin token is 256 random bits made by :func:`new_admin_token`, so guessing is hopeless
  and a single SHA-256 is enough; a slow hash would only slow every admin request.

Every comparison goes through :func:`hmac.compare_digest`. A stored hash that is malformed
or weaker than the minimum is refused with :class:`~security.errors.ConfigError` (loud: it is
a storage or configuration problem), while a wrong secret simply returns ``False``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from security.errors import ConfigError

__all__ = [
    "ADMIN_TOKEN_PREFIX",
    "CLIENT_SECRET_PREFIX",
    "DUMMY_HASH",
    "hash_admin_token",
    "hash_client_secret",
    "new_admin_token",
    "new_client_secret",
    "verify_admin_token",
    "verify_against_dummy",
    "verify_client_secret",
]

# Prefixes make leaked credentials recognisable to secret scanners and to our own leak checks.
ADMIN_TOKEN_PREFIX = "tga_"  # noqa: S105 - a prefix, not a secret
CLIENT_SECRET_PREFIX = "tgs_"  # noqa: S105 - a prefix, not a secret
_MIN_CREDENTIAL_CHARS = 32
_MAX_PRESENTED_CHARS = 1024  # anything longer is not ours; don't hash megabytes on request

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_MAX_SCRYPT_MEMORY = 128 * 1024 * 1024  # 128 * n * r bytes; caps the cost a stored hash can demand
_MAX_SCRYPT_P = 4
_SCRYPT_RE = re.compile(
    r"scrypt\$([1-9][0-9]{0,8})\$([1-9][0-9]{0,3})\$([1-9][0-9]{0,2})"
    r"\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})"
)
_ADMIN_HASH_RE = re.compile(r"sha256:([0-9a-f]{64})")

# The hash of a random secret that was thrown away. Verifying against it when a client id is
# unknown costs the same scrypt work as a real check, so response time does not reveal which
# client ids exist. Its parameters must stay equal to the ones hash_client_secret uses.
DUMMY_HASH = (
    "scrypt$32768$8$1$Vuf3FqhqqYMuIaO0k8jkdA==$De26NSoSnnC98yWIRF/BvIgasx3yc146D2M3oAkRmNY="
)


@dataclass(frozen=True)
class _ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes = field(repr=False)

    def derive(self, secret: str) -> bytes:
        kdf = Scrypt(salt=self.salt, length=_HASH_BYTES, n=self.n, r=self.r, p=self.p)
        return kdf.derive(_encode(secret))


def new_client_secret() -> str:
    """A fresh client secret: the prefix plus 256 random bits, URL-safe base64."""
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    """Encode ``secret`` as ``scrypt$n$r$p$salt_b64$hash_b64`` with a fresh 16-byte salt."""
    _require_strong(secret, "client secret", "generate it with new_client_secret()")
    params = _ScryptHash(_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, secrets.token_bytes(_SALT_BYTES), b"")
    salt_b64 = base64.b64encode(params.salt).decode("ascii")
    hash_b64 = base64.b64encode(params.derive(secret)).decode("ascii")
    return f"scrypt${params.n}${params.r}${params.p}${salt_b64}${hash_b64}"


def verify_client_secret(secret: str, encoded: str) -> bool:
    """True if ``secret`` matches ``encoded``; False on any mismatch.

    Raises :class:`ConfigError` if ``encoded`` is malformed or weaker than n=2**15, r=8, p=1
    (or so costly it could be used to exhaust memory): that is a storage problem, not a guess.
    """
    stored = _parse_scrypt(encoded)
    if not isinstance(secret, str) or len(secret) > _MAX_PRESENTED_CHARS:
        return False
    return hmac.compare_digest(stored.derive(secret), stored.digest)


def verify_against_dummy(secret: str) -> bool:
    """Spend the time of a real check against :data:`DUMMY_HASH`; always False.

    Call it when the client id is unknown, so the response takes as long as a wrong secret.
    """
    verify_client_secret(secret, DUMMY_HASH)
    return False


def new_admin_token() -> str:
    """A fresh admin token: the prefix plus 256 random bits (43 URL-safe characters)."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_admin_token(token: str) -> str:
    """``sha256:<hex>`` of ``token``: enough for 256 random bits, which nobody can guess."""
    _require_strong(token, "admin token", "generate one with new_admin_token()")
    return "sha256:" + hashlib.sha256(_encode(token)).hexdigest()


def verify_admin_token(presented: str, stored_hash: str) -> bool:
    """True if ``presented`` hashes to ``stored_hash``, compared in constant time.

    Raises :class:`ConfigError` if ``stored_hash`` is not ``sha256:`` and 64 lowercase hex digits.
    """
    if not isinstance(stored_hash, str) or not (match := _ADMIN_HASH_RE.fullmatch(stored_hash)):
        raise ConfigError(
            "admin token hash", "is not sha256:<64 hex digits>", "store hash_admin_token(token)"
        )
    if not isinstance(presented, str) or len(presented) > _MAX_PRESENTED_CHARS:
        return False
    digest = hashlib.sha256(_encode(presented)).hexdigest()
    return hmac.compare_digest(digest, match.group(1))


def _require_strong(value: str, what: str, fix: str) -> None:
    if not isinstance(value, str) or len(value) < _MIN_CREDENTIAL_CHARS:
        raise ConfigError(what, f"shorter than {_MIN_CREDENTIAL_CHARS} characters", fix)


def _encode(value: str) -> bytes:
    # surrogatepass: a presented value with a lone surrogate hashes (and fails) instead of raising.
    return value.encode("utf-8", "surrogatepass")


def _parse_scrypt(encoded: str) -> _ScryptHash:
    def refuse(problem: str) -> ConfigError:
        return ConfigError("client secret hash", problem, "rotate the client's secret")

    if not isinstance(encoded, str) or not (match := _SCRYPT_RE.fullmatch(encoded)):
        raise refuse("is not scrypt$n$r$p$salt$hash")
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if n < _SCRYPT_N or n & (n - 1) or r < _SCRYPT_R or p < _SCRYPT_P:
        raise refuse("uses scrypt parameters below n=2**15, r=8, p=1")
    if 128 * n * r > _MAX_SCRYPT_MEMORY or p > _MAX_SCRYPT_P:
        raise refuse("uses scrypt parameters above the allowed cost")
    try:
        salt = base64.b64decode(match.group(4), validate=True)
        digest = base64.b64decode(match.group(5), validate=True)
    except binascii.Error:
        raise refuse("has bad base64") from None
    if len(salt) < _SALT_BYTES or len(digest) != _HASH_BYTES:
        raise refuse("has a short salt or a hash of the wrong length")
    return _ScryptHash(n=n, r=r, p=p, salt=salt, digest=digest)
