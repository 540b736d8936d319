"""Authentication over real HTTPS: every forged, stale or misplaced credential gets one opaque 401.

Claim-level attacks are signed with the session's real token key, so only the attacked
property is wrong; a control test proves the same forger's untouched token is accepted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import httpx
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jws

from gateway.stores.clients import ClientRegistry
from security.keystore import KeyRing
from security.tokens import issue_token
from taskgate.devstack.redis_server import RedisServer
from tests.support.api import (
    POLICY,
    assert_401,
    b64url,
    forge,
    forget_token_limits,
    hs256,
    mint,
    valid_claims,
)
from tests.support.gateways import ApiClient, Gateway
from workers.contract.wire import owner_index

pytestmark = pytest.mark.integration

SUBMIT = "/v1/tasks/test.touch"
LIST = "/v1/tasks"
BODY = {"note": "hello"}


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


@pytest.fixture
def victim(make_client: Any) -> ApiClient:
    client: ApiClient = make_client()
    return client


@cache
def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem() -> bytes:
    return (
        _rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _public_der() -> bytes:
    return (
        _rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _kid(ring: KeyRing) -> str:
    return ring.token.current().kid


def _alg_none(alg: str, *, keep_signature: bool = False) -> Callable[[KeyRing, str], str]:
    def make(ring: KeyRing, sub: str) -> str:
        header = {"alg": alg, "typ": "at+jwt", "kid": _kid(ring)}
        unsigned = f"{b64url(header)}.{b64url(valid_claims(sub))}."
        if keep_signature:  # a real HS256 signature, but the header says none
            return unsigned + forge(ring, sub).rsplit(".", 1)[1]
        return unsigned

    return make


def _hs256_with(secret: Callable[[], bytes]) -> Callable[[KeyRing, str], str]:
    def make(ring: KeyRing, sub: str) -> str:
        header = {"alg": "HS256", "typ": "at+jwt", "kid": _kid(ring)}
        return hs256(header, valid_claims(sub), secret())

    return make


def _rs256(ring: KeyRing, sub: str) -> str:
    private_pem = _rsa_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return str(
        jws.sign(
            valid_claims(sub),
            private_pem.decode(),
            headers={"typ": "at+jwt", "kid": _kid(ring)},
            algorithm="RS256",
        )
    )


def _jwe(ring: KeyRing, sub: str) -> str:
    header = {"alg": "dir", "enc": "A256GCM", "zip": "DEF", "typ": "at+jwt", "kid": _kid(ring)}
    parts = [b64url(header), "", b64url(secrets.token_bytes(12)), b64url(b"x" * 64)]
    return ".".join([*parts, b64url(secrets.token_bytes(16))])


def _header(**changes: Any) -> Callable[[KeyRing, str], str]:
    return lambda ring, sub: forge(ring, sub, header=changes)


def _claims(**changes: Any) -> Callable[[KeyRing, str], str]:
    def make(ring: KeyRing, sub: str) -> str:
        now = int(time.time())
        resolved = {k: v(now) if callable(v) else v for k, v in changes.items()}
        return forge(ring, sub, **resolved)

    return make


ATTACKS: dict[str, Callable[[KeyRing, str], str]] = {
    "alg-none": _alg_none("none"),
    "alg-None": _alg_none("None"),
    "alg-NONE": _alg_none("NONE"),
    "alg-nOnE": _alg_none("nOnE"),
    "alg-none-with-signature": _alg_none("none", keep_signature=True),
    "hs256-signed-with-rsa-public-pem": _hs256_with(_public_pem),
    "hs256-signed-with-rsa-public-der": _hs256_with(_public_der),
    "rs256-signed-with-own-rsa-key": _rs256,
    "hs512-header": _header(alg="HS512"),
    "jwe-five-parts": _jwe,
    "signed-with-another-secret": lambda ring, sub: hs256(
        {"alg": "HS256", "typ": "at+jwt", "kid": _kid(ring)},
        valid_claims(sub),
        secrets.token_bytes(32),
    ),
    "signature-stripped": lambda ring, sub: forge(ring, sub).rsplit(".", 1)[0] + ".",
    "expired": _claims(
        exp=lambda now: now - 120, iat=lambda now: now - 720, nbf=lambda now: now - 720
    ),
    "iat-in-the-future": _claims(iat=lambda now: now + 3600, exp=lambda now: now + 4200),
    "nbf-in-the-future": _claims(nbf=lambda now: now + 3600),
    "no-exp": _claims(exp=None),
    "exp-as-string": _claims(exp=lambda now: str(now + 600)),
    "wrong-audience": _claims(aud="another-api"),
    "audience-as-list": _claims(aud=["taskgate-api", "another-api"]),
    "wrong-issuer": _claims(iss="evil"),
    "issuer-other-case": _claims(iss="TaskGate"),
    "typ-jwt": _header(typ="JWT"),
    "typ-missing": _header(typ=None),
    "kid-unknown": _header(kid="token-999"),
    "kid-oversized": _header(kid="k" * 2000),
    "kid-path-traversal": _header(kid="../../keys/token-1"),
    "kid-absolute-path": _header(kid="/dev/null"),
    "kid-missing": _header(kid=None),
    "header-jku": _header(jku="https://attacker.example/jwks.json"),
    "header-embedded-jwk": _header(jwk={"kty": "oct", "k": b64url(b"attacker")}),
    "header-crit": _header(crit=["exp"]),
    "token-of-10-kb": _claims(pad="x" * 10_240),
    "unknown-subject": lambda ring, _sub: forge(ring, "ghost-0badc0de"),
    "garbage": lambda _ring, _sub: "not-a-jwt",
}


def _send(http: httpx.Client, method: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if method == "POST":
        return http.post(SUBMIT, json=BODY, headers=headers)
    return http.get(LIST, headers=headers)


def test_control_forged_token_with_nothing_wrong_is_accepted(
    victim: ApiClient, keyring: KeyRing, gateway_server: Gateway
) -> None:
    """The forger's untouched token passes, so each attack below fails for its one change."""
    token = forge(keyring, victim.client_id)
    with gateway_server.client() as http:
        assert _send(http, "POST", token).status_code == 202
        assert _send(http, "GET", token).status_code == 200


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_or_invalid_token_gets_opaque_401(
    attack: str,
    method: str,
    victim: ApiClient,
    keyring: KeyRing,
    gateway_server: Gateway,
    redis_client: redis.Redis,
) -> None:
    """Each JWT attack gets 401 problem+json, a Bearer challenge, the generic detail, no task."""
    token = ATTACKS[attack](keyring, victim.client_id)
    with gateway_server.client() as http:
        response = _send(http, method, token)
    assert_401(response)
    assert "error_description" not in response.headers["www-authenticate"]
    assert redis_client.zcard(owner_index(victim.client_id)) == 0


@pytest.mark.parametrize("by", ["jti", "token"])
def test_revoked_jti_is_refused_and_other_tokens_still_work(
    by: str, victim: ApiClient, keyring: KeyRing, gateway_server: Gateway, admin_token: str
) -> None:
    """A token revoked by the admin (by jti or by value) is refused on submit, list and read."""
    token, claims = issue_token(
        subject=victim.client_id,
        scopes=["tasks:submit:*", "tasks:read"],
        keys=keyring.token,
        policy=POLICY,
    )
    other = mint(keyring, victim.client_id)
    with gateway_server.client() as http:
        accepted = http.post(SUBMIT, json=BODY, headers={"Authorization": f"Bearer {token}"})
        assert accepted.status_code == 202
        revoked = http.post(
            "/v1/admin/tokens/revoke",
            json={"jti": claims.jti} if by == "jti" else {"token": token},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["jti"] == claims.jti
        auth = {"Authorization": f"Bearer {token}"}
        assert_401(http.post(SUBMIT, json=BODY, headers=auth))
        assert_401(http.get(LIST, headers=auth))
        assert_401(http.get(accepted.headers["location"], headers=auth))
        assert_401(http.delete(accepted.headers["location"], headers=auth))
        fine = http.get(LIST, headers={"Authorization": f"Bearer {other}"})
    assert fine.status_code == 200
    assert [item["id"] for item in fine.json()["items"]] == [accepted.json()["id"]]


def test_disabled_client_is_refused_with_a_token_issued_before(
    victim: ApiClient, keyring: KeyRing, gateway_server: Gateway, tls_redis: RedisServer
) -> None:
    """Disabling a client stops its still-unexpired tokens at once, and new grants too."""
    token = victim.token()
    auth = {"Authorization": f"Bearer {token}"}
    with gateway_server.client() as http:
        assert http.post(SUBMIT, json=BODY, headers=auth).status_code == 202

        async def disable() -> None:
            client = tls_redis.tls.async_client()
            try:
                await ClientRegistry(client, keyring.state).disable(victim.client_id)
            finally:
                await client.aclose()

        asyncio.run(disable())
        assert_401(http.post(SUBMIT, json=BODY, headers=auth))
        assert_401(http.get(LIST, headers=auth))
        grant = http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": victim.client_id,
                "client_secret": victim.secret,
            },
        )
    assert grant.status_code == 401
    assert "access_token" not in grant.text


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer  abc.def.ghi",
        "Bearer a b",
        "Token abc.def.ghi",
        "Basic dXNlcjpwYXNz",
        "Bearer\tabc.def.ghi",
        "abc.def.ghi",
    ],
    ids=[
        "absent",
        "empty",
        "scheme-only",
        "double-space",
        "two-tokens",
        "other-scheme",
        "basic",
        "tab",
        "no-scheme",
    ],
)
def test_missing_or_malformed_authorization_gets_401(
    header: str | None, gateway_server: Gateway, victim: ApiClient
) -> None:
    """No usable Bearer credential gets the opaque 401 on submit, list, catalogue and read."""
    headers = {} if header is None else {"Authorization": header}
    with gateway_server.client(headers=headers) as http:
        assert_401(http.post(SUBMIT, json=BODY))
        assert_401(http.get(LIST))
        assert_401(http.get("/v1/tasks/catalog"))
        assert_401(http.get("/v1/tasks/00000000-0000-4000-8000-000000000000"))


def test_bearer_scheme_is_case_insensitive(
    gateway_server: Gateway, victim: ApiClient, keyring: KeyRing
) -> None:
    """RFC 7235: "bearer" in lower case with a valid token is accepted."""
    token = mint(keyring, victim.client_id)
    with gateway_server.client(headers={"Authorization": f"bearer {token}"}) as http:
        assert http.get(LIST).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", SUBMIT), ("GET", LIST), ("GET", "/v1/tasks/catalog")],
)
def test_admin_token_is_not_a_client_token(
    method: str, path: str, gateway_server: Gateway, admin_token: str
) -> None:
    """The admin token gets 401 on client-only routes (submit, list, catalogue)."""
    with gateway_server.client(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        response = http.request(method, path, json=BODY if method == "POST" else None)
    assert_401(response)


def test_admin_token_reads_any_task_and_a_tampered_one_does_not(
    gateway_server: Gateway, admin_token: str, victim: ApiClient, keyring: KeyRing
) -> None:
    """GET /v1/tasks/{id} is owner-or-admin: the admin token reads it, a near-copy gets 401."""
    with gateway_server.client(
        headers={"Authorization": f"Bearer {mint(keyring, victim.client_id)}"}
    ) as http:
        location = http.post(SUBMIT, json=BODY).headers["location"]
    with gateway_server.client() as http:
        ok = http.get(location, headers={"Authorization": f"Bearer {admin_token}"})
        tampered = admin_token[:-1] + ("A" if admin_token[-1] != "A" else "B")
        refused = http.get(location, headers={"Authorization": f"Bearer {tampered}"})
    assert ok.status_code == 200
    assert "result" not in ok.json()  # results are opened for the owner only
    assert_401(refused)


def test_admin_route_refuses_a_client_token(
    gateway_server: Gateway, victim: ApiClient, keyring: KeyRing
) -> None:
    """GET /v1/admin/clients with a client JWT (all scopes) gets 401."""
    token = mint(keyring, victim.client_id, "tasks:submit:* tasks:read audit:read")
    with gateway_server.client(headers={"Authorization": f"Bearer {token}"}) as http:
        assert_401(http.get("/v1/admin/clients"))


def test_admin_route_refuses_a_missing_or_forged_admin_token(
    gateway_server: Gateway, admin_token: str
) -> None:
    """GET /v1/admin/clients without a token or with a made-up tga_ token gets 401."""
    with gateway_server.client() as http:
        assert_401(http.get("/v1/admin/clients"))
        fake = "tga_" + secrets.token_urlsafe(32)
        assert_401(http.get("/v1/admin/clients", headers={"Authorization": f"Bearer {fake}"}))


def test_admin_route_accepts_the_admin_token(gateway_server: Gateway, admin_token: str) -> None:
    """GET /v1/admin/clients with the admin token is 200 (the control for the refusals)."""
    with gateway_server.client(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        assert http.get("/v1/admin/clients").status_code == 200
