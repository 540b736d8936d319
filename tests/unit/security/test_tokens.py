"""Access tokens that must work: the round trip, key rotation, keys and policy.

What ``issue_token`` writes and ``verify_token`` gives back, which keys sign, and the keys,
subjects, scopes and policies that are refused when issuing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from jose import jws, jwt

from security.errors import ConfigError, KeyRingError, TokenError
from security.keys import KeySet, Purpose, SymmetricKey
from security.tokens import AccessClaims, TokenPolicy, issue_token, verify_token
from tests.support.token_forgery import KEYS, NEW, NOW, OLD, POLICY, RETIRED
from tests.support.token_forgery import forge as _forge
from tests.support.token_forgery import jwt_claims as _claims
from tests.support.token_forgery import jwt_header as _header

# --- what must work -----------------------------------------------------------------------


def test_issued_token_verifies_to_the_same_claims() -> None:
    """A token issued now verifies now and yields exactly the claims issue_token returned."""
    token, issued = issue_token(
        subject="client-a", scopes=["tasks:submit"], keys=KEYS, policy=POLICY, now=NOW
    )
    verified = verify_token(token, keys=KEYS, policy=POLICY, now=NOW)
    assert verified == issued
    assert verified == AccessClaims(
        sub="client-a",
        scopes=frozenset({"tasks:submit"}),
        jti=issued.jti,
        iat=NOW,
        exp=NOW + POLICY.ttl_seconds,
        gen=1,
    )


def test_issued_token_has_the_rfc9068_header_and_claims() -> None:
    """Header is alg HS256, typ at+jwt, kid of the newest key; claims carry iss/aud/nbf/scope."""
    token, issued = issue_token(
        subject="client-a", scopes=["b:w", "a:r"], keys=KEYS, policy=POLICY, now=NOW + 0.9
    )
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt", "kid": NEW.kid}
    assert jwt.get_unverified_claims(token) == {
        "iss": POLICY.issuer,
        "aud": POLICY.audience,
        "sub": "client-a",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "jti": issued.jti,
        "scope": "a:r b:w",
        "gen": 1,
    }


def test_scopes_survive_the_round_trip_including_none() -> None:
    """Several scopes come back as a set; no scopes come back as the empty set."""
    for scopes in ([], ["tasks:submit", "tasks:read", "audit:read"]):
        token, _ = issue_token(subject="c", scopes=scopes, keys=KEYS, policy=POLICY, now=NOW)
        assert verify_token(token, keys=KEYS, policy=POLICY, now=NOW).scopes == frozenset(scopes)


def test_each_token_gets_a_fresh_128_bit_jti() -> None:
    """jti is 32 hex digits and never repeats, so revocation by jti is unambiguous."""
    jtis = {
        issue_token(subject="c", scopes=[], keys=KEYS, policy=POLICY, now=NOW)[1].jti
        for _ in range(50)
    }
    assert len(jtis) == 50
    assert all(len(j) == 32 and int(j, 16) >= 0 for j in jtis)


def test_token_signed_by_an_older_live_key_still_verifies() -> None:
    """After rotation, tokens made with the previous (still live) key keep working."""
    before = KeySet(Purpose.TOKEN, [OLD])
    token, issued = issue_token(subject="c", scopes=["x"], keys=before, policy=POLICY, now=NOW)
    assert jwt.get_unverified_header(token)["kid"] == OLD.kid
    assert verify_token(token, keys=KEYS, policy=POLICY, now=NOW) == issued


def test_new_tokens_use_the_newest_live_key() -> None:
    """issue_token signs with the newest live key, skipping retired ones."""
    keys = KeySet(
        Purpose.TOKEN,
        [OLD, NEW, SymmetricKey("token-3", Purpose.TOKEN, os.urandom(32), retired=True)],
    )
    token, _ = issue_token(subject="c", scopes=[], keys=keys, policy=POLICY, now=NOW)
    assert jwt.get_unverified_header(token)["kid"] == NEW.kid


def test_real_clock_is_used_when_now_is_not_given() -> None:
    """Without ``now`` both functions use the system clock, so a fresh token verifies."""
    token, issued = issue_token(subject="c", scopes=[], keys=KEYS, policy=POLICY)
    assert verify_token(token, keys=KEYS, policy=POLICY) == issued


def test_clock_skew_within_leeway_is_tolerated() -> None:
    """Up to leeway seconds past exp, or before iat/nbf, the token is still accepted."""
    token, _ = issue_token(subject="c", scopes=[], keys=KEYS, policy=POLICY, now=NOW)
    exp = NOW + POLICY.ttl_seconds
    verify_token(token, keys=KEYS, policy=POLICY, now=exp + POLICY.leeway_seconds - 1)
    verify_token(token, keys=KEYS, policy=POLICY, now=NOW - POLICY.leeway_seconds)


def test_token_without_nbf_and_with_unknown_claims_verifies() -> None:
    """nbf is optional and unknown claims are ignored, as RFC 7519 requires."""
    token = _forge(_header(), _claims(nbf=None, client_id="client-a"))
    assert verify_token(token, keys=KEYS, policy=POLICY, now=NOW).sub == "client-a"


def test_token_exactly_at_max_length_is_not_refused_for_length() -> None:
    """The cap is inclusive: a token of exactly max_length bytes reaches the other checks."""
    token = _forge(_header(), _claims(pad="x" * 600))
    policy = TokenPolicy(issuer=POLICY.issuer, audience=POLICY.audience, max_length=len(token))
    assert verify_token(token, keys=KEYS, policy=policy, now=NOW).sub == "client-a"


def test_jose_is_only_ever_given_a_one_element_hs256_allow_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every jose call gets algorithms=["HS256"], never None and never the header's alg."""
    seen: list[object] = []

    def spy(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs["algorithms"] if "algorithms" in kwargs else args[2])
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(jws, "verify", spy(jws.verify))
    monkeypatch.setattr(jwt, "decode", spy(jwt.decode))
    verify_token(_forge(_header(), _claims()), keys=KEYS, policy=POLICY, now=NOW)
    # Ours to jws.verify, ours to jwt.decode, and jwt.decode's own inner jws.verify.
    assert seen == [["HS256"], ["HS256"], ["HS256"]]


# --- keys and policy ----------------------------------------------------------------------


def test_keys_of_another_purpose_are_refused_for_issue_and_verify() -> None:
    """Broker or vault keys can never sign or verify access tokens."""
    keys = KeySet(Purpose.VAULT, [SymmetricKey("token-2", Purpose.VAULT, NEW.secret)])
    with pytest.raises(KeyRingError) as info:
        issue_token(subject="c", scopes=[], keys=keys, policy=POLICY, now=NOW)
    assert info.value.reason == "purpose"
    with pytest.raises(KeyRingError):
        verify_token(_forge(_header(), _claims()), keys=keys, policy=POLICY, now=NOW)


def test_issue_without_a_live_key_fails() -> None:
    """With every key retired there is nothing to sign with."""
    with pytest.raises(KeyRingError) as info:
        issue_token(
            subject="c", scopes=[], keys=KeySet(Purpose.TOKEN, [RETIRED]), policy=POLICY, now=NOW
        )
    assert info.value.reason == "no_key"


def test_a_pem_looking_token_key_is_refused_as_an_hmac_secret() -> None:
    """A key file that holds a PEM key by mistake is refused rather than used as a secret."""
    pem_like = SymmetricKey("token-5", Purpose.TOKEN, b"-----BEGIN PUBLIC KEY-----" + b"A" * 40)
    with pytest.raises(KeyRingError) as info:
        issue_token(
            subject="c", scopes=[], keys=KeySet(Purpose.TOKEN, [pem_like]), policy=POLICY, now=NOW
        )
    assert info.value.reason == "bad_key"
    assert pem_like.secret.decode() not in str(info.value)


@pytest.mark.parametrize("subject", ["", 7, None])
def test_issue_refuses_an_empty_or_non_string_subject(subject: object) -> None:
    """A token always names a real subject."""
    with pytest.raises(TokenError) as info:
        issue_token(subject=subject, scopes=[], keys=KEYS, policy=POLICY, now=NOW)  # type: ignore[arg-type]
    assert info.value.reason == "bad_claim"


@pytest.mark.parametrize("scope", ["", "two words", 'quo"te', "back\\slash", "caf\u00e9", 3])
def test_issue_refuses_scopes_that_are_not_scope_tokens(scope: object) -> None:
    """Scopes with spaces, quotes, backslashes or non-ASCII would not survive the round trip."""
    with pytest.raises(TokenError) as info:
        issue_token(subject="c", scopes=[scope], keys=KEYS, policy=POLICY, now=NOW)  # type: ignore[list-item]
    assert info.value.reason == "bad_claim"


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": ""},
        {"audience": ""},
        {"ttl_seconds": 0},
        {"ttl_seconds": 86_401},
        {"leeway_seconds": -1},
        {"leeway_seconds": 301},
        {"max_length": 511},
        {"max_length": 65_537},
    ],
)
def test_unsafe_token_policy_is_refused(changes: dict[str, Any]) -> None:
    """Missing issuer/audience, long lifetimes, big leeways and odd caps fail at startup."""
    settings: dict[str, Any] = {"issuer": "i", "audience": "a"} | changes
    with pytest.raises(ConfigError):
        TokenPolicy(**settings)


def test_the_client_generation_travels_in_the_token() -> None:
    """``gen`` is signed into the token and comes back verified; a token without it has 0."""
    token, issued = issue_token(
        subject="c", scopes=[], keys=KEYS, policy=POLICY, now=NOW, generation=7
    )
    assert verify_token(token, keys=KEYS, policy=POLICY, now=NOW).gen == issued.gen == 7


@pytest.mark.parametrize("generation", [0, -1, True, "2"])
def test_a_generation_that_is_not_a_positive_integer_is_not_issued(generation: object) -> None:
    """Generations start at 1; anything else is refused at issue time."""
    with pytest.raises(TokenError):
        issue_token(
            subject="c",
            scopes=[],
            keys=KEYS,
            policy=POLICY,
            now=NOW,
            generation=generation,  # type: ignore[arg-type]
        )
