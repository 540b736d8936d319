"""The best-effort lane: same checks, runs in the gateway after the reply, no broker."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.gateways import ApiClient
from workers.contract.wire import task_key

pytestmark = pytest.mark.integration


def test_best_effort_task_runs_after_the_reply_without_the_broker(
    make_client: Any, session_dir: Path, tls_redis: Any
) -> None:
    """202 first, then the gateway runs it; nothing goes to the queue or the vault."""
    client: ApiClient = make_client()
    marker = f"m{uuid.uuid4().hex[:8]}"
    with tls_redis.tls.client() as raw:
        queue_before = raw.llen("taskgate")
        with client.http() as http:
            response = http.post(
                "/v1/tasks/test.best_effort", json={"marker": marker, "secret": "be-secret-1"}
            )
            assert response.status_code == 202, response.text
            task_id = response.json()["id"]
            effect = session_dir / "side-effects" / f"best-effort-{marker}"
            deadline = time.monotonic() + 10
            while not effect.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert effect.read_text() == hashlib.sha256(b"be-secret-1").hexdigest()
            deadline = time.monotonic() + 5
            while http.get(f"/v1/tasks/{task_id}").json()["status"] != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert raw.llen("taskgate") == queue_before
        assert raw.keys(f"tg:vault:{task_id}:*") == []
        assert raw.hget(task_key(task_id), "queue") == b"best-effort"


def test_best_effort_task_is_validated_like_any_other(make_client: Any) -> None:
    """Unknown fields are refused with 422 before anything runs."""
    client: ApiClient = make_client()
    with client.http() as http:
        response = http.post("/v1/tasks/test.best_effort", json={"marker": "m", "extra": 1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_best_effort_task_needs_its_scope(make_client: Any, redis_client: redis.Redis) -> None:
    """A client without tasks:submit:test.best_effort is refused with 403."""
    client: ApiClient = make_client("tasks:submit:test.touch")
    with client.http() as http:
        response = http.post("/v1/tasks/test.best_effort", json={"marker": "m"})
    assert response.status_code == 403
