"""Stored state the gateway acts on cannot be forged from Redis (issue 16, item 3).

Each test tampers with raw Redis access (what any holder of a Redis identity can do) and
checks that the real gateway refuses the record, audits ``state.refused`` with the reason,
and never repairs it. Also: rotating a secret, or disabling and re-enabling a client, ends
every token issued before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from security.audit import iter_records
from security.keystore import KeyRing
from security.passwords import hash_client_secret
from security.tokens import issue_token
from tests.support.api import GENERIC_401, POLICY
from tests.support.gateways import ApiClient, Gateway
from workers.contract.wire import task_key

pytestmark = pytest.mark.integration

SUBMIT = "/v1/tasks/test.touch"
LIST = "/v1/tasks"
BODY = {"note": "hello"}


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Every test starts on an empty database (the fixture flushes it) and leaves no
    tampered revocation list behind for the next."""
    yield
    redis_client.delete("tg:revoked:jtis")


def _token(keyring: KeyRing, client_id: str, generation: int = 1) -> dict[str, str]:
    token, _ = issue_token(
        subject=client_id,
        scopes=["tasks:submit:*", "tasks:read"],
        keys=keyring.token,
        policy=POLICY,
        generation=generation,
    )
    return {"Authorization": f"Bearer {token}"}


def _refusals(client: redis.Redis, target: str) -> list[str]:
    """Reasons of the ``state.refused`` audit records about ``target``."""
    return [
        entry.record.reason
        for entry in iter_records(client)
        if entry.record.action == "state.refused" and entry.record.target == target
    ]


def _assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == GENERIC_401


def _grant(http: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return http.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def _admin(gateway: Gateway, admin_token: str) -> httpx.Client:
    return gateway.client(headers={"Authorization": f"Bearer {admin_token}"})


def test_changed_scopes_are_refused_and_audited(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """Scopes widened in Redis break the client record's MAC: requests are refused, audited."""
    victim: ApiClient = make_client("tasks:read")
    redis_client.hset(f"tg:client:{victim.client_id}", "scopes", "tasks:submit:* tasks:read")
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers=_token(keyring, victim.client_id)))
        _assert_401(http.post(SUBMIT, json=BODY, headers=_token(keyring, victim.client_id)))
    assert "client bad_mac" in _refusals(redis_client, f"client:{victim.client_id}")


def test_replaced_secret_hash_is_refused_and_audited(
    make_client: Any, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A swapped-in secret hash grants nothing, is audited, and is echoed nowhere."""
    victim: ApiClient = make_client()
    known = "tgs_" + "k" * 43
    forged_hash = hash_client_secret(known)
    redis_client.hset(f"tg:client:{victim.client_id}", "secret_hash", forged_hash)
    with gateway_server.client() as http:
        refused = _grant(http, victim.client_id, known)
    assert refused.status_code == 401, refused.text
    assert "access_token" not in refused.text
    assert known not in refused.text
    assert forged_hash not in refused.text
    assert "client bad_mac" in _refusals(redis_client, f"client:{victim.client_id}")
    log = gateway_server.child.log_path.read_text(errors="replace")
    assert known not in log
    assert forged_hash not in log


def test_cleared_disabled_flag_is_refused_and_audited(
    make_client: Any,
    keyring: KeyRing,
    gateway_server: Gateway,
    admin_token: str,
    redis_client: redis.Redis,
) -> None:
    """A disabled client flipped back to enabled in Redis stays refused, and it is audited."""
    victim: ApiClient = make_client()
    with _admin(gateway_server, admin_token) as admin:
        assert admin.post(f"/v1/admin/clients/{victim.client_id}/disable").status_code == 200
    key = f"tg:client:{victim.client_id}"
    redis_client.hset(key, "disabled", "0")
    generation = int(redis_client.hget(key, "generation") or 0)
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers=_token(keyring, victim.client_id, generation)))
        assert _grant(http, victim.client_id, victim.secret).status_code == 401
    assert "client bad_mac" in _refusals(redis_client, f"client:{victim.client_id}")


def test_raised_limits_are_refused_and_audited(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A rate limit or queue cap raised in Redis refuses the submission instead of applying."""
    victim: ApiClient = make_client(rate_limit="2/minute", max_queued=1)
    redis_client.hset(
        f"tg:client:{victim.client_id}",
        mapping={"rate_limit": "1000000/second", "max_queued": "100000"},
    )
    with gateway_server.client() as http:
        _assert_401(http.post(SUBMIT, json=BODY, headers=_token(keyring, victim.client_id)))
    assert "client bad_mac" in _refusals(redis_client, f"client:{victim.client_id}")


def test_client_record_without_a_mac_is_refused_with_a_clear_reason(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A record as written before records were MAC'd is refused: ``missing_mac``."""
    victim: ApiClient = make_client()
    redis_client.hdel(f"tg:client:{victim.client_id}", "mac", "generation")
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers=_token(keyring, victim.client_id)))
    assert "client missing_mac" in _refusals(redis_client, f"client:{victim.client_id}")


def test_changed_task_owner_is_refused_and_audited(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A task handed to another client in Redis is shown, listed, cancelled for no one."""
    owner: ApiClient = make_client()
    thief: ApiClient = make_client()
    with gateway_server.client() as http:
        accepted = http.post(SUBMIT, json=BODY, headers=_token(keyring, owner.client_id))
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["id"]
        redis_client.hset(task_key(task_id), "owner", thief.client_id)
        redis_client.zadd(f"tg:tasks:{thief.client_id}", {task_id: time.time()})
        for who in (owner, thief):
            auth = _token(keyring, who.client_id)
            assert http.get(f"/v1/tasks/{task_id}", headers=auth).status_code == 404
            assert http.delete(f"/v1/tasks/{task_id}", headers=auth).status_code == 404
            assert http.get(LIST, headers=auth).json()["items"] == []
    assert "task bad_mac" in _refusals(redis_client, task_id)


def test_deleted_revocation_does_not_revive_the_token(
    make_client: Any,
    keyring: KeyRing,
    gateway_server: Gateway,
    admin_token: str,
    redis_client: redis.Redis,
) -> None:
    """A deleted revocation key is caught by the MAC'd list: refused, audited as deleted."""
    victim: ApiClient = make_client()
    token, claims = issue_token(
        subject=victim.client_id, scopes=["tasks:read"], keys=keyring.token, policy=POLICY
    )
    with _admin(gateway_server, admin_token) as admin:
        assert admin.post("/v1/admin/tokens/revoke", json={"jti": claims.jti}).status_code == 200
    redis_client.delete(f"tg:revoked:jti:{claims.jti}")
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers={"Authorization": f"Bearer {token}"}))
    assert "revocation deleted" in _refusals(redis_client, f"jti:{claims.jti}")


def test_trimmed_revocation_list_is_refused_and_audited(
    make_client: Any,
    keyring: KeyRing,
    gateway_server: Gateway,
    admin_token: str,
    redis_client: redis.Redis,
) -> None:
    """A trimmed revocation list fails its MAC: tokens are refused (fail closed), audited."""
    victim: ApiClient = make_client()
    token, claims = issue_token(
        subject=victim.client_id, scopes=["tasks:read"], keys=keyring.token, policy=POLICY
    )
    with _admin(gateway_server, admin_token) as admin:
        assert admin.post("/v1/admin/tokens/revoke", json={"jti": claims.jti}).status_code == 200
    redis_client.delete(f"tg:revoked:jti:{claims.jti}")
    redis_client.hset("tg:revoked:jtis", "jtis", "")
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers={"Authorization": f"Bearer {token}"}))
    assert "revocations bad_mac" in _refusals(redis_client, "revocations")


def test_rotating_the_secret_ends_every_earlier_token(
    make_client: Any, gateway_server: Gateway, admin_token: str, redis_client: redis.Redis
) -> None:
    """After a secret rotation, a token issued before is refused and a new one works."""
    victim: ApiClient = make_client()
    before = {"Authorization": f"Bearer {victim.token()}"}
    with _admin(gateway_server, admin_token) as admin:
        rotated = admin.post(f"/v1/admin/clients/{victim.client_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    with gateway_server.client() as http:
        _assert_401(http.get(LIST, headers=before))
        fresh = _grant(http, victim.client_id, rotated.json()["client_secret"])
        assert fresh.status_code == 200, fresh.text
        after = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert http.get(LIST, headers=after).status_code == 200


def test_disabling_and_enabling_again_ends_every_earlier_token(
    make_client: Any, gateway_server: Gateway, admin_token: str, redis_client: redis.Redis
) -> None:
    """A token issued before a disable stays refused once the client is enabled again."""
    victim: ApiClient = make_client()
    before = {"Authorization": f"Bearer {victim.token()}"}
    with _admin(gateway_server, admin_token) as admin:
        assert admin.post(f"/v1/admin/clients/{victim.client_id}/disable").status_code == 200
        assert admin.post(f"/v1/admin/clients/{victim.client_id}/enable").status_code == 200
    with gateway_server.client() as http:
        _assert_401(http.post(SUBMIT, json=BODY, headers=before))
        _assert_401(http.get(LIST, headers=before))
        fresh = _grant(http, victim.client_id, victim.secret)
        assert fresh.status_code == 200, fresh.text
        after = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
        assert http.get(LIST, headers=after).status_code == 200


def test_an_older_authentic_client_record_put_back_is_refused(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, admin_token: str,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """A pre-disable record put back (MAC intact) is refused as rolled back, audited."""
    victim: ApiClient = make_client()
    key = f"tg:client:{victim.client_id}"
    saved: dict[Any, Any] = redis_client.hgetall(key)  # HSET's Mapping key type is invariant
    auth = _token(keyring, victim.client_id)
    with gateway_server.client() as http:
        assert http.get(LIST, headers=auth).status_code == 200
        with _admin(gateway_server, admin_token) as admin:
            assert admin.post(f"/v1/admin/clients/{victim.client_id}/disable").status_code == 200
        _assert_401(http.get(LIST, headers=_token(keyring, victim.client_id, 2)))
        redis_client.hset(key, mapping=saved)  # generation 1, enabled, authentic MAC
        _assert_401(http.get(LIST, headers=auth))
    assert "client rolled_back" in _refusals(redis_client, f"client:{victim.client_id}")
