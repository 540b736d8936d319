"""A client session over real HTTPS: token -> submit -> poll -> result, as the README shows."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest

from tests.support.gateways import ApiClient

pytestmark = pytest.mark.integration


def _poll(http: httpx.Client, task_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/v1/tasks/{task_id}").json()
        if body.get("status") in {"succeeded", "failed"} or "result" in body:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {body}")


def test_full_client_session_token_submit_poll_result(make_client: Any) -> None:
    """A token is issued, a task accepted (202 + Location), run by the worker, result readable."""
    client: ApiClient = make_client()
    with client.http() as http:
        response = http.post("/v1/tasks/test.touch", json={"note": "hello", "token": "pa55-w0rd-x"})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert response.headers["location"] == f"/v1/tasks/{body['id']}"
        assert body["links"]["self"] == response.headers["location"]
        for header in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
            assert header in response.headers
        done = _poll(http, body["id"])
    assert done["result"]["token_sha256"] == hashlib.sha256(b"pa55-w0rd-x").hexdigest()
    assert done["task"] == "test.touch"


def test_token_response_is_oauth2_shaped(make_client: Any) -> None:
    """The grant returns access_token, token_type Bearer, expires_in and the granted scope."""
    client: ApiClient = make_client("tasks:submit:test.touch tasks:read")
    with client.gateway.client() as http:
        response = http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.secret,
                "scope": "tasks:read",
            },
        )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "tasks:read"
    assert 0 < body["expires_in"] <= 900
    assert response.headers["cache-control"] == "no-store"


def test_malformed_token_request_is_400_invalid_request(make_client: Any) -> None:
    """A grant without grant_type is RFC 6749's 400 invalid_request, in problem+json."""
    client: ApiClient = make_client()
    with client.gateway.client() as http:
        response = http.post("/v1/token", data={"client_id": client.client_id})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error"] == "invalid_request"


def test_metrics_count_submissions_by_task_without_payload(
    make_client: Any, admin_token: str
) -> None:
    """/metrics counts submissions by task and outcome; a client token is refused."""
    client: ApiClient = make_client()
    with client.http() as http:
        assert http.post("/v1/tasks/test.touch", json={"note": "metric-marker"}).status_code == 202
        assert http.get("/metrics").status_code == 401
    with client.gateway.client(headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        text = admin.get("/metrics").text
    assert 'taskgate_submissions_total{outcome="accepted",task="test.touch"}' in text
    assert "metric-marker" not in text


def test_catalog_refuses_a_revoked_token(make_client: Any, admin_token: str) -> None:
    """The catalogue checks revocation like every client route, not only the signature."""
    client: ApiClient = make_client()
    token = client.token()
    with client.gateway.client(headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/v1/tasks/catalog").status_code == 200
        with client.gateway.client(headers={"Authorization": f"Bearer {admin_token}"}) as admin:
            assert admin.post("/v1/admin/tokens/revoke", json={"token": token}).status_code == 200
        assert http.get("/v1/tasks/catalog").status_code == 401
