"""Access tokens for API clients: short-lived HS256 JWTs (RFC 9068 profile, ``typ: at+jwt``).

This is the only module that imports python-jose, so the library can be swapped. jose has a
history of accepting more than it should (algorithm confusion, DER public keys as HMAC secrets,
``algorithms=None`` skipping the allow-list, JWE zip bombs; see PITFALLS.md), so nothing reaches
it until this module has checked the shape and the header itself:

1. size, alphabet and exactly three non-empty segments (no JWE, no unsigned tokens);
2. header: ``alg`` exactly ``HS256``, ``typ`` exactly ``at+jwt``, a well-formed ``kid`` naming a
   live key (found by comparison, never used as a path or pattern), no other parameters;
3. jose checks the signature with that one key and ``algorithms=["HS256"]``;
4. the claims are checked here against ``now`` (so tests need no clock), and then once more by
   jose's own validators as a fail-closed second opinion.

Every refusal is a :class:`~security.errors.TokenError` whose ``reason`` says which check failed
and whose message never contains the token. Revocation (``jti`` in Redis) is the caller's job.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from security.errors import ConfigError, KeyRetiredError, KeyRingError, TokenError
from security.keys import KeySet, Purpose, SymmetricKey, valid_kid

__all__ = ["ALGORITHM", "TOKEN_TYPE", "AccessClaims", "TokenPolicy", "issue_token", "verify_token"]

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 media type, not a password
_HEADER_PARAMS = frozenset({"alg", "typ", "kid"})
# Three non-empty base64url segments and nothing else: no padding, whitespace, non-ASCII,
# empty signature (alg=none) or fourth/fifth segment (JWE). Explicit ASCII ranges, not \w.
_SHAPE_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# RFC 6749 section 3.3 scope-token: printable ASCII except space, '"' and '\'.
_SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_JTI_RE = re.compile(r"[0-9a-f]{32}")
_JOSE_OPTIONS: Mapping[str, bool | int] = {
    "verify_signature": True,
    "verify_aud": True,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "verify_at_hash": True,
    "require_aud": True,
    "require_iss": True,
    "require_sub": True,
    "require_jti": True,
    # jose's `require_exp/iat/nbf` would switch its wall-clock checks back on (require forces
    # verify), and then `now` would not govern; time claims are required and checked here.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "require_exp": False,
    "require_iat": False,
    "require_nbf": False,
    "leeway": 0,
}


@dataclass(frozen=True)
class TokenPolicy:
    """Who issues tokens, for whom, how long they live and how much clock skew is tolerated."""

    issuer: str
    audience: str
    ttl_seconds: int = 900
    leeway_seconds: int = 30
    max_length: int = 8192

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ConfigError("token policy", "issuer and audience must be set", "set both")
        if not 1 <= self.ttl_seconds <= 86_400:
            raise ConfigError("token ttl", "must be 1..86400 seconds", "use a short lifetime")
        if not 0 <= self.leeway_seconds <= 300:
            raise ConfigError("token leeway", "must be 0..300 seconds", "use at most 300")
        if not 512 <= self.max_length <= 65_536:
            raise ConfigError("token max length", "must be 512..65536 bytes", "use 8192")


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token. ``jti``/``exp`` are what revocation needs.

    ``gen`` is the client's generation when the token was issued (0 if the token carries
    none): the gateway refuses a token whose generation is not the client's current one,
    so rotating a secret or disabling a client ends every token issued before.
    """

    sub: str
    scopes: frozenset[str]
    jti: str
    iat: int
    exp: int
    gen: int = 0


def issue_token(
    *,
    subject: str,
    scopes: Iterable[str],
    keys: KeySet[SymmetricKey],
    policy: TokenPolicy,
    now: float | None = None,
    generation: int = 1,
) -> tuple[str, AccessClaims]:
    """Sign a new access token for ``subject`` with the newest live key of ``keys``.

    ``generation`` is the client record's current generation (claim ``gen``).
    """
    _require_token_keys(keys)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise TokenError("generation must be a positive integer", reason="bad_claim")
    if not isinstance(subject, str) or not subject:
        raise TokenError("subject must be a non-empty string", reason="bad_claim")
    scope_set = frozenset(scopes)
    if not all(isinstance(s, str) and _SCOPE_RE.fullmatch(s) for s in scope_set):
        raise TokenError("a scope is not an RFC 6749 scope-token", reason="bad_claim")
    key = keys.current()
    iat = int(time.time() if now is None else now)
    claims = AccessClaims(
        sub=subject,
        scopes=scope_set,
        jti=secrets.token_hex(16),  # 128 random bits: unguessable, and a safe Redis key part
        iat=iat,
        exp=iat + policy.ttl_seconds,
        gen=generation,
    )
    payload = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": claims.sub,
        "iat": claims.iat,
        "nbf": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
        "scope": " ".join(sorted(scope_set)),
        "gen": generation,
    }
    headers = {"typ": TOKEN_TYPE, "kid": key.kid}
    token = jwt.encode(payload, _jose_key(key), algorithm=ALGORITHM, headers=headers)
    return token, claims


def verify_token(
    token: str,
    *,
    keys: KeySet[SymmetricKey],
    policy: TokenPolicy,
    now: float | None = None,
) -> AccessClaims:
    """Return the claims of ``token`` if every check passes; raise :class:`TokenError` otherwise."""
    _require_token_keys(keys)
    _check_shape(token, policy)
    key = _key_for(_checked_header(token), keys)
    jose_key = _jose_key(key)
    try:
        # A one-element list bound to the key, always: never None, never what the header says.
        payload = jws.verify(token, jose_key, algorithms=[ALGORITHM])
    except JOSEError:
        raise TokenError("signature does not verify", reason="bad_signature") from None
    claims = _parse_claims(payload)
    result = _check_claims(claims, policy, time.time() if now is None else now)
    try:
        jwt.decode(
            token,
            jose_key,
            algorithms=[ALGORITHM],
            options=_JOSE_OPTIONS,
            audience=policy.audience,
            issuer=policy.issuer,
        )
    except JOSEError:
        # Our checks are stricter than jose's; if jose still objects, refuse rather than guess.
        raise TokenError("claims refused by the JWT library", reason="bad_claim") from None
    return result


def _require_token_keys(keys: KeySet[SymmetricKey]) -> None:
    if keys.purpose != Purpose.TOKEN:
        raise KeyRingError(f"{keys.purpose} keys cannot sign access tokens", reason="purpose")


def _jose_key(key: SymmetricKey) -> Key:
    # A constructed Key object stops jose from trying to parse the secret as JSON / a JWK set.
    try:
        return jwk.construct(key.secret, ALGORITHM)
    except JOSEError:
        raise KeyRingError(
            f"token key {key.kid} is not usable for HMAC", reason="bad_key"
        ) from None


def _check_shape(token: str, policy: TokenPolicy) -> None:
    if not isinstance(token, str):
        raise TokenError("token is not a string", reason="malformed")
    # Length in characters first (cheap); once ASCII is confirmed it equals the length in bytes.
    if len(token) > policy.max_length:
        raise TokenError(f"token longer than {policy.max_length} bytes", reason="too_long")
    if not _SHAPE_RE.fullmatch(token):
        raise TokenError("token is not three base64url segments", reason="malformed")


def _checked_header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError:
        raise TokenError("token header does not decode", reason="malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg != ALGORITHM:
        raise TokenError("token algorithm is not allowed", reason="alg_not_allowed")
    if header.get("typ") != TOKEN_TYPE:
        raise TokenError("token type is not at+jwt", reason="bad_typ")
    kid = header.get("kid")
    if not isinstance(kid, str) or not valid_kid(kid):
        raise TokenError("token key id missing or malformed", reason="bad_kid")
    if not _HEADER_PARAMS.issuperset(header):
        # crit, jku, jwk, x5u, x5c, zip, enc...: nothing we understand, so nothing we accept.
        raise TokenError("token header has unsupported parameters", reason="bad_header")
    return header


def _key_for(header: Mapping[str, Any], keys: KeySet[SymmetricKey]) -> SymmetricKey:
    try:
        return keys.get(header["kid"])  # compared against each kid; never a path or a pattern
    except KeyRetiredError:
        raise TokenError("token key has been retired", reason="key_retired") from None
    except KeyRingError:
        raise TokenError("token key id is unknown", reason="unknown_kid") from None


def _parse_claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError:  # includes JSONDecodeError, UnicodeDecodeError and oversized ints
        raise TokenError("token claims do not decode", reason="malformed") from None
    if not isinstance(claims, dict):
        raise TokenError("token claims are not an object", reason="malformed")
    return claims


def _check_claims(claims: Mapping[str, Any], policy: TokenPolicy, now: float) -> AccessClaims:
    for name in ("iss", "aud", "sub", "iat", "exp", "jti", "scope"):
        if name not in claims:
            raise TokenError(f"token has no {name} claim", reason="missing_claim")
    leeway = policy.leeway_seconds
    iat, exp = _int_claim(claims, "iat"), _int_claim(claims, "exp")
    nbf = _int_claim(claims, "nbf") if "nbf" in claims else None
    if now >= exp + leeway:
        raise TokenError("token has expired", reason="expired")
    if nbf is not None and nbf > now + leeway:
        raise TokenError("token is not valid yet", reason="not_yet_valid")
    if iat > now + leeway:
        raise TokenError("token was issued in the future", reason="iat_in_future")
    # Exact string equality: no lists, no prefixes, no case folding.
    if not isinstance(claims["iss"], str) or claims["iss"] != policy.issuer:
        raise TokenError("token issuer is not accepted", reason="bad_issuer")
    if not isinstance(claims["aud"], str) or claims["aud"] != policy.audience:
        raise TokenError("token audience is not this service", reason="bad_audience")
    sub, jti, scope = claims["sub"], claims["jti"], claims["scope"]
    if not isinstance(sub, str) or not sub:
        raise TokenError("token subject is not a non-empty string", reason="bad_claim")
    if not isinstance(jti, str) or not _JTI_RE.fullmatch(jti):
        raise TokenError("token id is not 32 hex digits", reason="bad_claim")
    if not isinstance(scope, str):
        raise TokenError("token scope is not a string", reason="bad_claim")
    scopes = scope.split(" ") if scope else []
    if not all(_SCOPE_RE.fullmatch(s) for s in scopes):
        raise TokenError("token scope is not space-separated scope-tokens", reason="bad_claim")
    gen = _int_claim(claims, "gen") if "gen" in claims else 0
    if gen < 0:
        raise TokenError("token gen claim is negative", reason="bad_claim")
    return AccessClaims(sub=sub, scopes=frozenset(scopes), jti=jti, iat=iat, exp=exp, gen=gen)


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims[name]
    # bool is an int subclass; floats, strings and NaN are refused: we only ever issue ints.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenError(f"token {name} claim is not an integer", reason="bad_claim")
    return value
