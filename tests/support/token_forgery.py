"""Access tokens built by hand for the token tests: a policy, a key ring, forged JWS.

``forge`` signs any header and claims (or none), ``refused`` checks that verification
refuses a token for the given reason without echoing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

import pytest

from security.errors import TokenError
from security.keys import KeySet, Purpose, SymmetricKey
from security.tokens import TokenPolicy, verify_token

NOW = 1_700_000_000
POLICY = TokenPolicy(issuer="https://taskgate.test", audience="taskgate-api")
OLD = SymmetricKey("token-1", Purpose.TOKEN, os.urandom(32))
NEW = SymmetricKey("token-2", Purpose.TOKEN, os.urandom(32))
RETIRED = SymmetricKey("token-0", Purpose.TOKEN, os.urandom(32), retired=True)
KEYS = KeySet(Purpose.TOKEN, [RETIRED, OLD, NEW])
JTI = "0123456789abcdef0123456789abcdef"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj: object) -> bytes:
    """JSON without spaces, as a JWS segment holds it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def jwt_header(**changes: Any) -> dict[str, Any]:
    """A valid token header signed by ``NEW``, with ``changes`` (``None`` drops a field)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt", "kid": NEW.kid}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def jwt_claims(**changes: Any) -> dict[str, Any]:
    """Valid claims at ``NOW``, with ``changes`` (``None`` drops a claim)."""
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


def forge(
    header: dict[str, Any] | bytes,
    claims: dict[str, Any] | bytes,
    secret: bytes | None = NEW.secret,
    signature: str | None = None,
) -> str:
    """Build a compact JWS by hand, HMAC-SHA256 over it with ``secret`` unless ``signature``."""
    h = header if isinstance(header, bytes) else compact_json(header)
    c = claims if isinstance(claims, bytes) else compact_json(claims)
    signing_input = f"{b64url(h)}.{b64url(c)}"
    if signature is None:
        assert secret is not None
        signature = b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


def refused(token: object, reason: str, *, keys: KeySet[SymmetricKey] = KEYS) -> TokenError:
    """Check ``token`` is refused for ``reason``, its error neither echoing nor chaining it."""
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
