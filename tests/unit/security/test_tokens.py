"""Access tokens: the round trip, key rotation, and one test per known JWT attack."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jws, jwt

from security.errors import ConfigError, KeyRingError, TokenError
from security.keys import KeySet, Purpose, SymmetricKey
from security.tokens import AccessClaims, TokenPolicy, issue_token, verify_token

NOW = 1_700_000_000
POLICY = TokenPolicy(issuer="https://taskgate.test", audience="taskgate-api")
OLD = SymmetricKey("token-1", Purpose.TOKEN, os.urandom(32))
NEW = SymmetricKey("token-2", Purpose.TOKEN, os.urandom(32))
RETIRED = SymmetricKey("token-0", Purpose.TOKEN, os.urandom(32), retired=True)
KEYS = KeySet(Purpose.TOKEN, [RETIRED, OLD, NEW])
JTI = "0123456789abcdef0123456789abcdef"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _header(**changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt", "kid": NEW.kid}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": POLICY.issuer,
        "aud": POLICY.audience,
        "sub": "client-a",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + POLICY.ttl_seconds,
        "jti": JTI,
        "scope": "tasks:submit tasks:read",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _forge(
    header: dict[str, Any] | bytes,
    claims: dict[str, Any] | bytes,
    secret: bytes | None = NEW.secret,
    signature: str | None = None,
) -> str:
    """Build a compact JWS by hand, HMAC-SHA256 over it with ``secret`` unless ``signature``."""
    h = header if isinstance(header, bytes) else _json(header)
    c = claims if isinstance(claims, bytes) else _json(claims)
    signing_input = f"{_b64(h)}.{_b64(c)}"
    if signature is None:
        assert secret is not None
        signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


def _refused(token: object, reason: str, *, keys: KeySet[SymmetricKey] = KEYS) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify_token(token, keys=keys, policy=POLICY, now=NOW)  # type: ignore[arg-type]
    assert info.value.reason == reason
    if isinstance(token, str) and token:
        assert token not in str(info.value)
        assert token not in repr(info.value)
    # No chained jose exception (whose text we don't control) travels with the error.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
    return info.value


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


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


# --- algorithm attacks ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_a_signature_is_refused(alg: str) -> None:
    """alg=none in any letter case is refused even when a signature segment is present."""
    _refused(_forge(_header(alg=alg), _claims()), "alg_not_allowed")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_unsigned_with_empty_signature_is_refused(alg: str) -> None:
    """An unsigned token (empty third segment) never gets as far as the header."""
    _refused(_forge(_header(alg=alg), _claims(), signature=""), "malformed")


@pytest.mark.parametrize("alg", ["HS384", "HS512", "hs256", "HS256 ", "RS256", "ES256", "PS256"])
def test_any_alg_but_exact_hs256_is_refused(alg: str) -> None:
    """Only the exact string HS256 is allowed, even for other HMAC variants or case changes."""
    _refused(_forge(_header(alg=alg), _claims()), "alg_not_allowed")


@pytest.mark.parametrize("alg", [None, ["HS256"], 256])
def test_missing_or_non_string_alg_is_refused(alg: object) -> None:
    """A header without alg, or with alg of the wrong JSON type, is refused."""
    header = _header()
    if alg is None:
        del header["alg"]
    else:
        header["alg"] = alg
    _refused(_forge(header, _claims()), "alg_not_allowed")


def test_real_rs256_token_is_refused(rsa_private: rsa.RSAPrivateKey) -> None:
    """A genuinely RS256-signed token (valid for its own key) is refused on its header."""
    pem = rsa_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token = jws.sign(_claims(), pem.decode(), headers=_header(alg="RS256"), algorithm="RS256")
    _refused(token, "alg_not_allowed")


def test_real_es256_token_is_refused(ec_private: ec.EllipticCurvePrivateKey) -> None:
    """A genuinely ES256-signed token is refused on its header."""
    pem = ec_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token = jws.sign(_claims(), pem.decode(), headers=_header(alg="ES256"), algorithm="ES256")
    _refused(token, "alg_not_allowed")


@pytest.mark.parametrize("fmt", ["rsa-pem", "rsa-der", "ec-pem", "ec-der"])
def test_hs256_signed_with_a_public_key_as_secret_is_refused(
    fmt: str, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    """Algorithm confusion (CVE-2024-33663, jose #398/#414): public key bytes as HMAC secret."""
    public = (rsa_private if fmt.startswith("rsa") else ec_private).public_key()
    encoding = serialization.Encoding.PEM if fmt.endswith("pem") else serialization.Encoding.DER
    secret = public.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)
    _refused(_forge(_header(), _claims(), secret=secret), "bad_signature")


def test_jwe_shaped_five_segment_token_is_refused() -> None:
    """A compact JWE (five segments) is never handed to jose (CVE-2024-33664 zip bomb)."""
    header = _b64(_json({"alg": "dir", "enc": "A256GCM", "zip": "DEF", "kid": NEW.kid}))
    _refused(f"{header}.{_b64(b'k')}.{_b64(b'iv')}.{_b64(b'ct')}.{_b64(b'tag')}", "malformed")


# --- header attacks -----------------------------------------------------------------------


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "application/at+jwt", "AT+JWT", 1])
def test_wrong_or_missing_typ_is_refused(typ: object) -> None:
    """typ must be exactly at+jwt, so an ID token or other JWT cannot be replayed as one."""
    header = _header()
    if typ is None:
        del header["typ"]
    else:
        header["typ"] = typ
    _refused(_forge(header, _claims()), "bad_typ")


def test_missing_kid_is_refused() -> None:
    """Without a kid there is no key to verify with, and no guessing among keys."""
    header = _header()
    del header["kid"]
    _refused(_forge(header, _claims()), "bad_kid")


@pytest.mark.parametrize(
    "kid",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "token-2/../token-1",
        "token-*",
        "",
        "k" * 65,
        "k" * 5000,
        "token-2\n",
        "token-\u0662",
        2,
        ["token-2"],
        {"kid": "token-2"},
    ],
)
def test_malformed_kid_is_refused(kid: object) -> None:
    """Path-like, glob, oversized, empty, non-ASCII and non-string kids are refused by shape."""
    _refused(_forge(_header(kid=kid), _claims()), "bad_kid")


def test_unknown_kid_is_refused() -> None:
    """A well-formed kid that names no key is refused."""
    _refused(_forge(_header(kid="token-9"), _claims()), "unknown_kid")


def test_kid_of_a_retired_key_is_refused() -> None:
    """A token signed by a key that has since been retired is refused, signature and all."""
    _refused(_forge(_header(kid=RETIRED.kid), _claims(), secret=RETIRED.secret), "key_retired")


def test_kid_pointing_at_another_live_key_fails_the_signature() -> None:
    """Swapping kid to another live key does not help: that key's HMAC does not match."""
    _refused(_forge(_header(kid=OLD.kid), _claims(), secret=NEW.secret), "bad_signature")


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://evil.example/jwks.json"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"x5u": "https://evil.example/cert.pem"},
        {"x5c": ["MIIB"]},
        {"crit": ["exp"]},
        {"zip": "DEF"},
        {"enc": "A256GCM"},
    ],
)
def test_header_parameters_we_do_not_understand_are_refused(extra: dict[str, Any]) -> None:
    """jku/jwk/x5u/x5c/crit/zip/enc and friends are refused, never followed."""
    _refused(_forge(_header(**extra), _claims()), "bad_header")


# --- shape attacks ------------------------------------------------------------------------


def test_ten_kilobyte_token_is_refused_before_decoding() -> None:
    """An oversized but otherwise valid token is refused on length alone."""
    _refused(_forge(_header(), _claims(pad="x" * 10_000)), "too_long")


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b.",
        "a.b.c=",
        "a.b.c\n",
        " a.b.c",
        "a .b.c",
        "a.b.c\x00",
        "\u00e9\u00e9.\u00e9.\u00e9",
        "\U0001f600.b.c",
        "a+/.b.c",
    ],
)
def test_non_jws_shapes_and_non_ascii_junk_are_refused(junk: str) -> None:
    """Anything but three non-empty base64url segments of ASCII is refused as malformed."""
    _refused(junk, "malformed")


@pytest.mark.parametrize("token", [None, b"a.b.c", 42])
def test_non_string_token_is_refused(token: object) -> None:
    """A value that is not a str (bytes, None from a missing header) is refused."""
    _refused(token, "malformed")


@pytest.mark.parametrize(
    "header_segment",
    [
        _b64(b"not json"),
        _b64(b"[1,2,3]"),
        _b64(b'"HS256"'),
        "abcde",  # length 5: not valid base64 at all
    ],
)
def test_header_that_does_not_decode_to_an_object_is_refused(header_segment: str) -> None:
    """A header that is not base64url JSON object is refused before any key is looked at."""
    rest = _forge(_header(), _claims()).split(".", 1)[1]
    _refused(f"{header_segment}.{rest}", "malformed")


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1,2]", b"\xff\xfe", b'{"exp": 1' + b"0" * 5000 + b"}"]
)
def test_signed_payload_that_is_not_a_json_object_is_refused(payload: bytes) -> None:
    """Even correctly signed, claims that are not a JSON object are refused."""
    _refused(_forge(_header(), payload), "malformed")


def test_tampered_payload_is_refused() -> None:
    """Changing a claim (here: adding a scope) after signing breaks the signature."""
    token, _ = issue_token(subject="c", scopes=["tasks:read"], keys=KEYS, policy=POLICY, now=NOW)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "tasks:read admin"
    _refused(f"{header}.{_b64(_json(claims))}.{signature}", "bad_signature")


def test_tampered_signature_is_refused() -> None:
    """A signature from another secret, or a truncated one, does not verify."""
    _refused(_forge(_header(), _claims(), secret=os.urandom(32)), "bad_signature")
    token = _forge(_header(), _claims())
    _refused(token[:-4], "bad_signature")


# --- claim attacks ------------------------------------------------------------------------


def test_expired_token_is_refused() -> None:
    """At exp + leeway the token is dead."""
    token, claims = issue_token(subject="c", scopes=[], keys=KEYS, policy=POLICY, now=NOW)
    with pytest.raises(TokenError) as info:
        verify_token(token, keys=KEYS, policy=POLICY, now=claims.exp + POLICY.leeway_seconds)
    assert info.value.reason == "expired"


def test_token_with_future_iat_is_refused() -> None:
    """A token claiming to be issued beyond the leeway in the future is refused."""
    _refused(_forge(_header(), _claims(iat=NOW + 31, nbf=None)), "iat_in_future")


def test_token_with_future_nbf_is_refused() -> None:
    """A token not valid until beyond the leeway in the future is refused."""
    _refused(_forge(_header(), _claims(nbf=NOW + 31)), "not_yet_valid")


@pytest.mark.parametrize(
    "aud",
    ["other-api", "taskgate-api ", "TASKGATE-API", ["taskgate-api"], ["x", "taskgate-api"], 1],
)
def test_wrong_audience_is_refused(aud: object) -> None:
    """aud must be exactly our audience string; lists and near-misses are refused."""
    _refused(_forge(_header(), _claims(aud=aud)), "bad_audience")


@pytest.mark.parametrize(
    "iss", ["https://evil.test", "https://taskgate.test/", ["https://taskgate.test"], 1]
)
def test_wrong_issuer_is_refused(iss: object) -> None:
    """iss must be exactly our issuer string."""
    _refused(_forge(_header(), _claims(iss=iss)), "bad_issuer")


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti", "scope"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    """Each of iss, aud, sub, iat, exp, jti and scope is required."""
    claims = _claims()
    del claims[claim]
    _refused(_forge(_header(), claims), "missing_claim")


@pytest.mark.parametrize(
    "changes",
    [
        {"iat": str(NOW)},
        {"iat": float(NOW)},
        {"exp": True},
        {"exp": NOW + 900.5},
        {"exp": [NOW]},
        {"nbf": str(NOW)},
        {"sub": ""},
        {"sub": 7},
        {"jti": ""},
        {"jti": "ABCDEF0123456789ABCDEF0123456789"},
        {"jti": "*"},
        {"jti": 12},
        {"scope": ["tasks:read"]},
        {"scope": "tasks:read  tasks:submit"},
        {"scope": " tasks:read"},
        {"scope": 'tasks:"read"'},
        {"scope": "tasks:\u00e9"},
    ],
)
def test_claims_of_the_wrong_type_or_shape_are_refused(changes: dict[str, Any]) -> None:
    """Time claims must be ints, sub non-empty, jti 32 hex digits, scope scope-tokens."""
    _refused(_forge(_header(), _claims(**changes)), "bad_claim")


def test_claim_jose_objects_to_is_refused_fail_closed() -> None:
    """If jose's own validation refuses what ours passed (here: at_hash), the token is refused."""
    _refused(_forge(_header(), _claims(at_hash="abc")), "bad_claim")


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
