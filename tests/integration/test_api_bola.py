"""Object-level authorisation: a client never reads, lists or cancels another client's task.

Another client's task must be indistinguishable from one that does not exist (404, same body).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from security.keystore import KeyRing
from tests.support.api import assert_problem, forget_token_limits, mint
from tests.support.gateways import Gateway
from workers.contract.wire import revoked_key, task_key

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


@pytest.fixture
def two_clients(make_client: Any, keyring: KeyRing) -> tuple[dict[str, str], dict[str, str]]:
    """Authorization headers for clients A and B."""
    a, b = make_client(), make_client()
    return (
        {"Authorization": f"Bearer {mint(keyring, a.client_id)}"},
        {"Authorization": f"Bearer {mint(keyring, b.client_id)}"},
    )


def _submit(gateway: Gateway, headers: dict[str, str]) -> str:
    with gateway.client(headers=headers) as http:
        response = http.post("/v1/tasks/test.touch", json={"note": "mine"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in {"instance", "request_id"}}


def test_reading_another_clients_task_is_404_like_a_missing_one(
    gateway_server: Gateway, two_clients: tuple[dict[str, str], dict[str, str]]
) -> None:
    """A's GET of B's task is 404 with the very body a made-up id gets (no existence oracle)."""
    a, b = two_clients
    theirs = _submit(gateway_server, b)
    with gateway_server.client(headers=a) as http:
        foreign = http.get(f"/v1/tasks/{theirs}")
        missing = http.get(f"/v1/tasks/{uuid.uuid4()}")
    assert _comparable(assert_problem(foreign, 404)) == _comparable(assert_problem(missing, 404))
    with gateway_server.client(headers=b) as http:
        assert http.get(f"/v1/tasks/{theirs}").status_code == 200


def test_listing_shows_only_the_callers_own_tasks(
    gateway_server: Gateway, two_clients: tuple[dict[str, str], dict[str, str]]
) -> None:
    """A's task list holds A's task and not B's, and the other way round."""
    a, b = two_clients
    mine, theirs = _submit(gateway_server, a), _submit(gateway_server, b)
    with gateway_server.client(headers=a) as http:
        listed_a = {item["id"] for item in http.get("/v1/tasks").json()["items"]}
    with gateway_server.client(headers=b) as http:
        listed_b = {item["id"] for item in http.get("/v1/tasks").json()["items"]}
    assert listed_a == {mine}
    assert listed_b == {theirs}


def test_cancelling_another_clients_task_is_404_and_changes_nothing(
    gateway_server: Gateway,
    two_clients: tuple[dict[str, str], dict[str, str]],
    redis_client: redis.Redis,
) -> None:
    """A's DELETE of B's task is 404, and B's task is not revoked by it."""
    a, b = two_clients
    theirs = _submit(gateway_server, b)
    with gateway_server.client(headers=a) as http:
        response = http.delete(f"/v1/tasks/{theirs}")
    assert_problem(response, 404)
    assert redis_client.hget(task_key(theirs), "state") != b"revoked"
    assert not redis_client.exists(revoked_key(theirs))
    with gateway_server.client(headers=b) as http:
        assert http.get(f"/v1/tasks/{theirs}").json()["status"] != "revoked"


@pytest.mark.parametrize("task_id", ["not-a-uuid", "..%2F..%2Fetc", "*", "0" * 300])
def test_malformed_task_ids_are_404(
    task_id: str,
    gateway_server: Gateway,
    two_clients: tuple[dict[str, str], dict[str, str]],
) -> None:
    """Ids that are not task ids are 404 on read and cancel (never a pattern or a key part)."""
    a, _ = two_clients
    with gateway_server.client(headers=a) as http:
        assert_problem(http.get(f"/v1/tasks/{task_id}"), 404)
        assert_problem(http.delete(f"/v1/tasks/{task_id}"), 404)
