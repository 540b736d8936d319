"""Access tokens that must be refused: one test per known JWT attack.

Forged headers (alg, typ, kid, unknown parameters), shapes that are not a JWS, tampering,
and claims that are expired, early, for another audience or issuer, or malformed.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jws

from security.errors import TokenError
from security.tokens import issue_token, verify_token
from tests.support.token_forgery import KEYS, NEW, NOW, OLD, POLICY, RETIRED
from tests.support.token_forgery import b64url as _b64
from tests.support.token_forgery import compact_json as _json
from tests.support.token_forgery import forge as _forge
from tests.support.token_forgery import jwt_claims as _claims
from tests.support.token_forgery import jwt_header as _header
from tests.support.token_forgery import refused as _refused


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_private() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


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
