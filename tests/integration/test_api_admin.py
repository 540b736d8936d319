"""The admin API: clients, task revocation, stats, keys, and the audit views."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from gateway.stores.task_records import signed_fields
from security.keystore import KeyRing
from tests.support.gateways import ApiClient, Gateway
from workers.contract.wire import task_key

pytestmark = pytest.mark.integration


def _admin(gateway: Gateway, token: str) -> Any:
    return gateway.client(headers={"Authorization": f"Bearer {token}"})


def test_admin_creates_lists_and_rotates_clients(gateway_server: Gateway, admin_token: str) -> None:
    """A created client gets its secret once; the list never shows secrets; rotation works."""
    name = f"adm-{uuid.uuid4().hex[:6]}"
    with _admin(gateway_server, admin_token) as http:
        created = http.post("/v1/admin/clients", json={"name": name, "scopes": ["tasks:read"]})
        assert created.status_code == 201, created.text
        client_id, secret = created.json()["client_id"], created.json()["client_secret"]
        listed = http.get("/v1/admin/clients").json()["items"]
        mine = [c for c in listed if c["client_id"] == client_id]
        assert mine
        assert secret not in str(listed)
        assert not {"client_secret", "secret_hash"} & set(mine[0])
        rotated = http.post(f"/v1/admin/clients/{client_id}/rotate-secret")
        assert rotated.status_code == 200
        assert rotated.json()["client_secret"] != secret
    with gateway_server.client() as http:
        old = http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
    assert old.status_code == 401


def test_admin_revokes_a_queued_task_but_not_a_finished_one(
    gateway_server: Gateway, admin_token: str, make_client: Any, tls_redis: Any, keyring: KeyRing
) -> None:
    """Revoke answers 202 for a task not yet started and 409 once it has finished."""
    client: ApiClient = make_client()
    with client.http() as http:
        done_id = http.post("/v1/tasks/test.touch", json={"note": "x"}).json()["id"]
        deadline = time.monotonic() + 20
        while http.get(f"/v1/tasks/{done_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    queued_id = str(uuid.uuid4())
    with tls_redis.tls.client() as raw:  # a record the worker has not seen (never enqueued)
        signed = signed_fields(
            keyring.state,
            queued_id,
            owner=client.client_id,
            name="test.touch",
            seal_iat=None,
            seal_exp=None,
            replays=0,
        )  # as the gateway writes it: the admin acts only on a record that verifies
        raw.hset(task_key(queued_id), mapping={**signed, "state": "queued"})
    with _admin(gateway_server, admin_token) as http:
        revoked = http.post(f"/v1/admin/tasks/{queued_id}/revoke")
        assert revoked.status_code == 202
        assert revoked.json() == {"id": queued_id, "status": "revoked"}
        assert http.get(f"/v1/admin/tasks/{queued_id}").json()["status"] == "revoked"
        finished = http.post(f"/v1/admin/tasks/{done_id}/revoke")
        assert finished.status_code == 409
        assert finished.headers["content-type"] == "application/problem+json"
        inspected = http.get(f"/v1/admin/tasks/{done_id}").json()
        assert inspected["status"] == "succeeded"
        assert "result" not in inspected  # the admin sees metadata, never the result


def test_admin_stats_and_keys_show_no_material(
    gateway_server: Gateway, admin_token: str, keyring: KeyRing
) -> None:
    """Stats report queues and counts; the key listing shows ids, never key bytes."""
    with _admin(gateway_server, admin_token) as http:
        stats = http.get("/v1/admin/stats")
        keys = http.get("/v1/admin/keys")
    assert stats.status_code == 200
    assert "taskgate" in stats.json()["queues"]
    assert keys.status_code == 200
    body = keys.text
    assert keyring.broker.current().kid in body
    assert keyring.broker.current().secret.hex() not in body


def test_audit_views_are_open_to_audit_read_and_to_nobody_else(
    gateway_server: Gateway, admin_token: str, make_client: Any
) -> None:
    """A client with audit:read filters and verifies the log; one without it gets 403."""
    auditor: ApiClient = make_client("audit:read")
    outsider: ApiClient = make_client("tasks:read")
    with auditor.http() as http:
        page = http.get("/v1/admin/audit", params={"action": "token.issue", "limit": 5})
        verified = http.get("/v1/admin/audit/verify")
    assert page.status_code == 200
    assert page.json()["items"]
    assert all(item["action"] == "token.issue" for item in page.json()["items"])
    assert verified.status_code == 200
    assert verified.json()["ok"] is True
    with outsider.http() as http:
        assert http.get("/v1/admin/audit").status_code == 403
    with auditor.http() as http:  # audit:read does not open the other admin routes
        assert http.get("/v1/admin/stats").status_code == 401


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/admin/audit", "since"),
        ("/v1/admin/audit", "until"),
        ("/v1/admin/tasks", "before"),
        ("/v1/admin/dead-letters", "before"),
    ],
)
def test_admin_time_filters_refuse_nan_and_infinity(
    gateway_server: Gateway, admin_token: str, path: str, param: str
) -> None:
    """Admin cursors and time filters are finite numbers: nan/inf are 422, not 503."""
    with _admin(gateway_server, admin_token) as http:
        for value in ("nan", "inf", "-5"):
            response = http.get(path, params={param: value})
            assert response.status_code == 422, (path, param, value, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
