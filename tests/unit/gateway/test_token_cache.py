"""The verified-token cache never accepts what verify_token would refuse."""

from __future__ import annotations

import os

import pytest

from gateway.token_cache import VerifiedTokens
from security.errors import TokenError
from security.keys import KeySet, Purpose, SymmetricKey
from security.tokens import TokenPolicy, issue_token

KEYS = KeySet(Purpose.TOKEN, [SymmetricKey("token-1", Purpose.TOKEN, os.urandom(32))])
POLICY = TokenPolicy(issuer="taskgate", audience="taskgate-api", ttl_seconds=60)


def test_a_cached_token_is_refused_once_expired() -> None:
    """A hit is re-checked against exp: after expiry it is verified again, and refused."""
    cache = VerifiedTokens()
    token, claims = issue_token(
        subject="c-1", scopes=["tasks:read"], keys=KEYS, policy=POLICY, now=1000
    )
    assert cache.verify(token, keys=KEYS, policy=POLICY, now=1010) == claims
    assert cache.verify(token, keys=KEYS, policy=POLICY, now=1020) == claims
    with pytest.raises(TokenError):
        cache.verify(token, keys=KEYS, policy=POLICY, now=claims.exp + 100)


def test_a_different_token_is_never_served_from_the_cache() -> None:
    """Only the exact bytes hit: a tampered copy of a cached token is verified and refused."""
    cache = VerifiedTokens()
    token, _ = issue_token(subject="c-1", scopes=["tasks:read"], keys=KEYS, policy=POLICY, now=1000)
    cache.verify(token, keys=KEYS, policy=POLICY, now=1001)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(TokenError):
        cache.verify(tampered, keys=KEYS, policy=POLICY, now=1001)


def test_the_cache_is_bounded() -> None:
    """The oldest entries are dropped past the size limit."""
    cache = VerifiedTokens(size=2)
    tokens = [
        issue_token(subject=f"c-{i}", scopes=["tasks:read"], keys=KEYS, policy=POLICY, now=1000)[0]
        for i in range(3)
    ]
    for token in tokens:
        cache.verify(token, keys=KEYS, policy=POLICY, now=1001)
    assert len(cache._cache) == 2
    assert tokens[0] not in cache._cache
