"""Scopes as documented (docs/tokens.md), over real HTTPS.

``tasks:read`` opens listing, reading and cancelling one's own tasks; ``tasks:submit:<task>``
(or ``tasks:submit:*``) opens submitting; ``audit:read`` opens the audit views. A grant may
ask for any subset of the client's scopes, ``tasks:submit:<task>`` under ``tasks:submit:*``
included, and the token carries only what was asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from security.keystore import KeyRing
from tests.support.api import assert_problem, forget_token_limits, mint
from tests.support.gateways import ApiClient, Gateway

pytestmark = pytest.mark.integration

TOUCH = "/v1/tasks/test.touch"


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _grant(http: httpx.Client, client: ApiClient, scope: str) -> httpx.Response:
    return http.post(
        "/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.secret,
            "scope": scope,
        },
    )


def _parked_task(gateway: Gateway, keyring: KeyRing, client_id: str) -> str:
    """A task of ``client_id`` that stays queued (no worker serves its queue)."""
    with gateway.client(headers=_auth(mint(keyring, client_id))) as http:
        response = http.post("/v1/tasks/test.parked", json={"note": "parked"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("scopes", ["audit:read", "tasks:submit:*", "tasks:submit:test.parked"])
def test_a_token_without_tasks_read_cannot_list_read_or_cancel(
    scopes: str, make_client: Any, keyring: KeyRing, gateway_server: Gateway
) -> None:
    """An audit:read-only or submit-only token gets 403 on list, read and cancel of the
    client's own task, and the task is left queued."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read audit:read")
    task_id = _parked_task(gateway_server, keyring, owner.client_id)
    with gateway_server.client(headers=_auth(mint(keyring, owner.client_id, scopes))) as http:
        answers = [
            http.get("/v1/tasks"),
            http.get(f"/v1/tasks/{task_id}"),
            http.delete(f"/v1/tasks/{task_id}"),
        ]
    for response in answers:
        assert assert_problem(response, 403)["detail"] == "the tasks:read scope is required"
    with gateway_server.client(headers=_auth(mint(keyring, owner.client_id))) as http:
        assert http.get(f"/v1/tasks/{task_id}").json()["status"] == "queued"


def test_a_tasks_read_token_lists_reads_and_cancels_its_own_tasks(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway
) -> None:
    """A token with only tasks:read lists, reads and cancels the client's own task."""
    owner: ApiClient = make_client()
    task_id = _parked_task(gateway_server, keyring, owner.client_id)
    with gateway_server.client(headers=_auth(mint(keyring, owner.client_id, "tasks:read"))) as http:
        listed = http.get("/v1/tasks")
        read = http.get(f"/v1/tasks/{task_id}")
        cancelled = http.delete(f"/v1/tasks/{task_id}")
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [task_id]
    assert read.status_code == 200
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "revoked"


def test_the_catalogue_shows_only_what_the_token_may_submit(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway
) -> None:
    """The catalogue needs a valid client token and no scope: it lists the tasks that token
    may submit (none for an audit:read-only token)."""
    owner: ApiClient = make_client()
    names = {}
    for scopes in ("audit:read", "tasks:submit:test.touch"):
        with gateway_server.client(headers=_auth(mint(keyring, owner.client_id, scopes))) as http:
            response = http.get("/v1/tasks/catalog")
        assert response.status_code == 200
        names[scopes] = [item["name"] for item in response.json()["tasks"]]
    assert names == {"audit:read": [], "tasks:submit:test.touch": ["test.touch"]}


def test_narrowing_tasks_submit_star_to_one_task(make_client: Any, gateway_server: Gateway) -> None:
    """A client holding tasks:submit:* gets a token for tasks:submit:test.touch alone: it
    submits test.touch (fast lane) but not test.other, and cannot read tasks."""
    client: ApiClient = make_client("tasks:submit:* tasks:read")
    with gateway_server.client() as http:
        granted = _grant(http, client, "tasks:submit:test.touch")
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "tasks:submit:test.touch"
    with gateway_server.client(headers=_auth(granted.json()["access_token"])) as http:
        accepted = http.post(TOUCH, json={"note": "narrow"})
        other = http.post("/v1/tasks/test.other", json={"note": "narrow"})
        listing = http.get("/v1/tasks")
    assert accepted.status_code == 202, accepted.text
    assert (
        assert_problem(other, 403)["detail"] == "the token lacks the scope tasks:submit:test.other"
    )
    assert listing.status_code == 403


@pytest.mark.parametrize(
    ("held", "asked"),
    [
        ("tasks:submit:* tasks:read", "audit:read"),
        ("tasks:submit:test.touch tasks:read", "tasks:submit:*"),
        ("tasks:submit:test.touch", "tasks:submit:test.touch tasks:read"),
        ("tasks:submit:* tasks:read", "tasks:submit:Not-A-Task!"),
    ],
)
def test_asking_for_a_scope_not_held_is_invalid_scope(
    held: str, asked: str, make_client: Any, gateway_server: Gateway
) -> None:
    """A grant that asks for anything the client does not hold is 400 invalid_scope."""
    client: ApiClient = make_client(held)
    with gateway_server.client() as http:
        response = _grant(http, client, asked)
    assert assert_problem(response, 400)["error"] == "invalid_scope"
    assert "access_token" not in response.text
