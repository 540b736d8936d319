"""Stored credentials: scrypt client secrets and the SHA-256 admin token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import pytest

from security.errors import ConfigError
from security.passwords import (
    DUMMY_HASH,
    hash_admin_token,
    hash_client_secret,
    new_admin_token,
    new_client_secret,
    verify_admin_token,
    verify_against_dummy,
    verify_client_secret,
)

SALT = base64.b64encode(b"s" * 16).decode()
DIGEST = base64.b64encode(b"h" * 32).decode()


@pytest.fixture(scope="module")
def secret() -> str:
    return new_client_secret()


@pytest.fixture(scope="module")
def encoded(secret: str) -> str:
    return hash_client_secret(secret)


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Record every hmac.compare_digest call made by the module under test."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module passwords calls
    return calls


# --- client secrets -----------------------------------------------------------------------


def test_new_client_secret_is_prefixed_256_bit_urlsafe_and_fresh() -> None:
    """tgs_ + 43 URL-safe characters (256 bits), different every time."""
    secrets = {new_client_secret() for _ in range(20)}
    assert len(secrets) == 20
    for s in secrets:
        assert re.fullmatch(r"tgs_[A-Za-z0-9_-]{43}", s)


def test_client_secret_hash_is_scrypt_with_the_required_parameters(
    secret: str, encoded: str
) -> None:
    """The encoding is scrypt$32768$8$1$<16-byte salt>$<32-byte hash> and hides the secret."""
    algo, n, r, p, salt, digest = encoded.split("$")
    assert (algo, n, r, p) == ("scrypt", "32768", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32
    assert secret not in encoded


def test_same_secret_hashes_differently_each_time(secret: str, encoded: str) -> None:
    """A fresh salt per hash, so equal secrets do not give equal records."""
    assert hash_client_secret(secret) != encoded


def test_client_secret_round_trip(secret: str, encoded: str) -> None:
    """The secret that was hashed verifies against its hash."""
    assert verify_client_secret(secret, encoded) is True


@pytest.mark.parametrize(
    "presented",
    ["", "tgs_wrong", "x" * 1025, "\ud800surrogate", "\u00e9" * 40, 12345, None],
)
def test_wrong_secret_returns_false_rather_than_raising(
    presented: object, secret: str, encoded: str
) -> None:
    """Wrong, empty, oversized, unencodable or non-string secrets are simply not a match."""
    assert verify_client_secret(presented, encoded) is False  # type: ignore[arg-type]


def test_secret_differing_in_one_character_is_refused(secret: str, encoded: str) -> None:
    """A near miss is a miss."""
    near = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert verify_client_secret(near, encoded) is False


def test_client_secret_check_compares_in_constant_time(
    secret: str, encoded: str, compare_calls: list[tuple[Any, Any]]
) -> None:
    """Both match and mismatch go through hmac.compare_digest on the 32-byte digests."""
    assert verify_client_secret(secret, encoded) is True
    assert verify_client_secret(secret + "x", encoded) is False
    assert len(compare_calls) == 2
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in compare_calls)


@pytest.mark.parametrize("weak", ["", "short", "x" * 31, None, b"x" * 40])
def test_hashing_a_weak_or_non_string_client_secret_is_refused(weak: object) -> None:
    """Only generated-strength secrets (>= 32 characters) are ever stored."""
    with pytest.raises(ConfigError):
        hash_client_secret(weak)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext-secret",
        f"bcrypt$32768$8$1${SALT}${DIGEST}",
        f"scrypt$32768$8$1${SALT}",
        f"scrypt$32768$8$1${SALT}${DIGEST}$extra",
        f"scrypt$032768$8$1${SALT}${DIGEST}",
        f"scrypt$-32768$8$1${SALT}${DIGEST}",
        f"scrypt$32768$8$1${SALT}${DIGEST}\n",
        f"scrypt$32768$8$1$!!!!${DIGEST}",
        None,
        123,
    ],
)
def test_malformed_client_secret_hash_is_refused(bad: object, secret: str) -> None:
    """Anything but scrypt$n$r$p$b64$b64 is a storage problem, raised loudly."""
    with pytest.raises(ConfigError) as info:
        verify_client_secret(secret, bad)  # type: ignore[arg-type]
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [
        (2**14, 8, 1),  # weaker n
        (2**15, 4, 1),  # weaker r
        (2**15, 8, 0),  # p of zero (the pattern refuses it)
        (3 * 2**14, 8, 1),  # n not a power of two
        (2**15 + 1, 8, 1),
    ],
)
def test_client_secret_hash_weaker_than_minimum_is_refused(n: int, r: int, p: int) -> None:
    """A downgraded record (lower n/r/p, or a non power-of-two n) is refused, not checked."""
    with pytest.raises(ConfigError):
        verify_client_secret("x" * 40, f"scrypt${n}${r}${p}${SALT}${DIGEST}")


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [(2**18, 8, 1), (2**17, 16, 1), (2**15, 8, 5)],
)
def test_client_secret_hash_costlier_than_the_cap_is_refused(n: int, r: int, p: int) -> None:
    """A tampered record cannot make each login burn gigabytes of memory or minutes of CPU."""
    with pytest.raises(ConfigError):
        verify_client_secret("x" * 40, f"scrypt${n}${r}${p}${SALT}${DIGEST}")


def test_client_secret_hash_at_the_cost_cap_is_accepted() -> None:
    """128 * n * r == 128 MiB is still allowed, leaving room to raise the cost later."""
    assert verify_client_secret("x" * 40, f"scrypt${2**17}$8$1${SALT}${DIGEST}") is False


@pytest.mark.parametrize(
    ("salt", "digest"),
    [
        (base64.b64encode(b"s" * 15).decode(), DIGEST),  # short salt
        (SALT, base64.b64encode(b"h" * 31).decode()),  # short hash
        (SALT, base64.b64encode(b"h" * 64).decode()),  # long hash
        ("c2FsdA=", DIGEST),  # bad padding
        (SALT, "aGFzaA"),  # missing padding
    ],
)
def test_client_secret_hash_with_bad_salt_or_digest_is_refused(salt: str, digest: str) -> None:
    """Salt must be at least 16 bytes, the hash exactly 32, both valid padded base64."""
    with pytest.raises(ConfigError):
        verify_client_secret("x" * 40, f"scrypt$32768$8$1${salt}${digest}")


def test_dummy_hash_has_the_same_cost_as_a_real_hash(encoded: str) -> None:
    """DUMMY_HASH uses the exact parameters of new hashes, so it takes as long to check."""
    assert DUMMY_HASH.split("$")[:4] == encoded.split("$")[:4]
    assert verify_client_secret("x" * 40, DUMMY_HASH) is False


@pytest.mark.parametrize("presented", ["anything", "", new_client_secret()])
def test_verify_against_dummy_always_fails_but_does_the_work(
    presented: str, compare_calls: list[tuple[Any, Any]]
) -> None:
    """For an unknown client id the check runs scrypt and compares, then says no."""
    assert verify_against_dummy(presented) is False
    assert len(compare_calls) == 1


# --- admin token --------------------------------------------------------------------------


def test_new_admin_token_is_prefixed_256_bit_urlsafe_and_fresh() -> None:
    """tga_ + 43 URL-safe characters (256 bits), different every time."""
    tokens = {new_admin_token() for _ in range(20)}
    assert len(tokens) == 20
    for t in tokens:
        assert re.fullmatch(r"tga_[A-Za-z0-9_-]{43}", t)


def test_admin_token_hash_is_prefixed_sha256() -> None:
    """The stored form is sha256:<hex of SHA-256(token)> and does not contain the token."""
    token = new_admin_token()
    stored = hash_admin_token(token)
    assert stored == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored


def test_admin_token_round_trip() -> None:
    """The token that was hashed verifies against its stored hash."""
    token = new_admin_token()
    assert verify_admin_token(token, hash_admin_token(token)) is True


@pytest.mark.parametrize("presented", ["", "tga_wrong", "x" * 1025, "\ud800", 42, None, b"bytes"])
def test_wrong_admin_token_returns_false(presented: object) -> None:
    """Wrong, empty, oversized, unencodable and non-string tokens are not a match."""
    stored = hash_admin_token(new_admin_token())
    assert verify_admin_token(presented, stored) is False  # type: ignore[arg-type]


def test_admin_token_differing_in_one_character_is_refused() -> None:
    """A near miss is a miss."""
    token = new_admin_token()
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert verify_admin_token(near, hash_admin_token(token)) is False


def test_admin_token_check_compares_in_constant_time(
    compare_calls: list[tuple[Any, Any]],
) -> None:
    """Match and mismatch both go through hmac.compare_digest on equal-length hex digests."""
    token = new_admin_token()
    stored = hash_admin_token(token)
    assert verify_admin_token(token, stored) is True
    assert verify_admin_token(token + "x", stored) is False
    assert len(compare_calls) == 2
    assert all(len(a) == len(b) == 64 for a, b in compare_calls)


@pytest.mark.parametrize("weak", ["", "admin", "x" * 31, None])
def test_hashing_a_weak_admin_token_is_refused(weak: object) -> None:
    """A hand-picked short admin token is refused: SHA-256 is only enough for random tokens."""
    with pytest.raises(ConfigError):
        hash_admin_token(weak)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "md5:" + "a" * 32,
        "sha256:" + "a" * 64 + "\n",
        None,
    ],
)
def test_malformed_stored_admin_hash_is_refused(bad: object) -> None:
    """A stored hash that is not sha256:<64 lowercase hex> is a configuration error."""
    with pytest.raises(ConfigError) as info:
        verify_admin_token(new_admin_token(), bad)  # type: ignore[arg-type]
    assert info.value.setting == "admin token hash"
