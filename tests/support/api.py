"""Shared helpers for the HTTP-level API tests: problem checks, forged tokens, rate limits.

Tokens are minted here with the session's real token key (``keyring.token``) rather than
through ``POST /v1/token`` wherever the grant itself is not under test: the per-IP token limit
(20/minute) is shared by every test that runs from 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx
import redis

from security.keystore import KeyRing
from security.tokens import TokenPolicy, issue_token

POLICY = TokenPolicy(issuer="taskgate", audience="taskgate-api")
GENERIC_401 = "missing, invalid, expired or revoked credentials"
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


def b64url(data: bytes | str | Mapping[str, Any]) -> str:
    """base64url without padding, of bytes, text, or a JSON object."""
    if isinstance(data, Mapping):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(keyring: KeyRing, client_id: str, scopes: str = "tasks:submit:* tasks:read") -> str:
    """A genuine access token for ``client_id``, signed with the session's current token key."""
    token, _ = issue_token(
        subject=client_id, scopes=scopes.split(), keys=keyring.token, policy=POLICY
    )
    return token


def valid_claims(client_id: str, *, now: float | None = None, **changes: Any) -> dict[str, Any]:
    """The claims ``issue_token`` would write, with ``changes`` applied (None deletes a claim)."""
    stamp = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": "taskgate",
        "aud": "taskgate-api",
        "sub": client_id,
        "iat": stamp,
        "nbf": stamp,
        "exp": stamp + 600,
        "jti": secrets.token_hex(16),
        "scope": "tasks:read tasks:submit:*",
        "gen": 1,  # a fresh client's generation
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def hs256(header: Mapping[str, Any], claims: Mapping[str, Any] | bytes, secret: bytes) -> str:
    """A compact JWS signed with HMAC-SHA256 over ``secret``, assembled by hand.

    By hand so that nothing the library refuses to sign (a PEM as an HMAC secret, odd
    headers) stops an attack from being sent: the gateway must be the one refusing.
    """
    signing_input = f"{b64url(dict(header))}.{b64url(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def forge(
    keyring: KeyRing,
    client_id: str,
    *,
    header: Mapping[str, Any] | None = None,
    **claim_changes: Any,
) -> str:
    """A token signed with the real current token key; only what is changed is wrong."""
    key = keyring.token.current()
    base = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    for name, value in (header or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return hs256(base, valid_claims(client_id, **claim_changes), key.secret)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status``, the security headers, no trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers.get("strict-transport-security", "").startswith("max-age=")
    request_id = response.headers.get("x-request-id")
    assert request_id
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["request_id"] == request_id
    assert body["instance"] == response.request.url.path
    for marker in ("Traceback", 'File "', "site-packages", "Error:"):
        assert marker not in response.text
    return body


def assert_401(response: httpx.Response) -> dict[str, Any]:
    """The one opaque 401: problem+json, a Bearer challenge, the generic detail only."""
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body["detail"] == GENERIC_401
    assert body["title"] == "Unauthorized"
    assert set(body) == PROBLEM_FIELDS, body  # no extra member that could say why
    return body


def forget_token_limits(client: redis.Redis) -> None:
    """Drop the ``/v1/token`` counters (requests per IP, failures per IP and per client+IP).

    Every test connects from 127.0.0.1, so a test that spends the per-IP token budget would
    otherwise fail the next test that asks for a token without flushing the database first.
    """
    for pattern in ("LIMITS:LIMITER/*", "tg:token:fail:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


def clear_of_window_edge(seconds: int, margin: float = 4.0) -> None:
    """Wait (at most ``margin`` s) so a short burst does not straddle a fixed-window boundary.

    Rate-limit windows are aligned to the clock; a burst that crosses the boundary would be
    counted in two windows and the exact-count assertions would be flaky.
    """
    into = time.time() % seconds
    if into > seconds - margin:
        time.sleep(seconds - into + 0.1)
