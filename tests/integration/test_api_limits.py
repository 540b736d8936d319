"""Rate limits and backpressure over real HTTPS: 429 with Retry-After and RateLimit-* headers.

The limits live in Redis, so two uvicorn worker processes share one budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from certs.material import CertPaths
from security.keystore import KeyRing
from tests.support.api import assert_problem, clear_of_window_edge, forget_token_limits, mint
from tests.support.gateways import ApiClient, Gateway, extra_gateway
from workers.contract.wire import owner_index, queued_key

pytestmark = pytest.mark.integration

SUBMIT = "/v1/tasks/test.touch"
LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


def _once(response: httpx.Response, name: str) -> str:
    values = response.headers.get_list(name)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def test_client_limit_counts_down_then_429_with_retry_after(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """With 3/minute: three 202s count RateLimit-Remaining 2,1,0; the fourth is 429."""
    client: ApiClient = make_client(rate_limit="3/minute")
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}
    clear_of_window_edge(60)
    with gateway_server.client(headers=auth) as http:
        accepted = [http.post(SUBMIT, json={"note": str(i)}) for i in range(3)]
        refused = http.post(SUBMIT, json={"note": "one too many"})
    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert [_once(r, "ratelimit-remaining") for r in accepted] == ["2", "1", "0"]
    for response in accepted:
        assert _once(response, "ratelimit-limit") == "3"
        assert 1 <= int(_once(response, "ratelimit-reset")) <= 60
    problem = assert_problem(refused, 429)
    assert problem["type"].endswith("rate-limited")
    retry_after = int(_once(refused, "retry-after"))
    assert 1 <= retry_after <= 60
    assert _once(refused, "ratelimit-limit") == "3"
    assert _once(refused, "ratelimit-remaining") == "0"
    assert int(_once(refused, "ratelimit-reset")) == retry_after
    assert redis_client.zcard(owner_index(client.client_id)) == 3


def test_per_client_queue_cap_is_429_backpressure(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A client already at its max_queued waiting tasks gets 429 with Retry-After."""
    client: ApiClient = make_client(max_queued=2)
    # Two tasks "waiting" (the session worker would otherwise drain real ones at once).
    redis_client.zadd(
        queued_key(client.client_id),
        {"00000000-0000-4000-8000-00000000000a": time.time(), "waiting-b": time.time()},
    )
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}
    with gateway_server.client(headers=auth) as http:
        response = http.post(SUBMIT, json={"note": "queued behind two"})
    problem = assert_problem(response, 429)
    assert problem["type"].endswith("backpressure")
    assert int(response.headers["retry-after"]) > 0
    assert redis_client.zcard(owner_index(client.client_id)) == 0


def test_a_replay_at_the_queue_cap_is_the_accepted_task_not_429(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """A client whose queue filled after its submission retries it with the same
    Idempotency-Key: the answer is the task it was given (202, same id), while a new
    submission is still refused with 429."""
    client: ApiClient = make_client(max_queued=1)
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}
    body = {"note": "accepted once"}
    with gateway_server.client(headers=auth) as http:
        first = http.post(SUBMIT, json=body, headers={"Idempotency-Key": "cap-replay-1"})
        assert first.status_code == 202, first.text
        # The queue is at its cap whether or not the session's worker ran the task.
        redis_client.zadd(queued_key(client.client_id), {"waiting-c": time.time()})
        replay = http.post(SUBMIT, json=body, headers={"Idempotency-Key": "cap-replay-1"})
        fresh = http.post(SUBMIT, json=body, headers={"Idempotency-Key": "cap-replay-2"})
    assert replay.status_code == 202, replay.text
    assert replay.json()["id"] == first.json()["id"]
    assert assert_problem(fresh, 429)["type"].endswith("backpressure")


def test_token_endpoint_limit_per_client_is_429_with_headers(
    make_client: Any, gateway_server: Gateway
) -> None:
    """After 10 failed grants for one client id from one address, the 11th from that address
    is 429 with Retry-After (the lock is per client id and address: docs/tokens.md)."""
    client: ApiClient = make_client()
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": "wrong-secret-guess",
    }
    with gateway_server.client() as http:
        answers = [http.post("/v1/token", data=form) for _ in range(11)]
    assert [r.status_code for r in answers[:10]] == [401] * 10
    refused = answers[10]
    problem = assert_problem(refused, 429)
    assert problem["error"] == "slow_down"
    assert int(_once(refused, "retry-after")) > 0
    for name in LIMIT_HEADERS:
        _once(refused, name)
    assert _once(refused, "ratelimit-remaining") == "0"


def _worker_processes(pid: int) -> list[int]:
    """uvicorn's worker processes under the supervisor ``pid`` (Linux /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [
        int(part)
        for part in text.split()
        if b"spawn_main" in Path(f"/proc/{part}/cmdline").read_bytes()
    ]


def test_limit_is_shared_by_two_uvicorn_worker_processes(
    make_client: Any,
    keyring: KeyRing,
    stack_env: dict[str, str],
    session_dir: Path,
    pki: CertPaths,
) -> None:
    """With 5/minute and 8 requests on new connections to 2 processes: exactly 5 x 202, 3 x 429."""
    client: ApiClient = make_client(rate_limit="5/minute")
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}
    with extra_gateway("gateway-2-workers", stack_env, session_dir, pki, workers=2) as gateway:
        assert len(_worker_processes(gateway.child.pid)) == 2
        clear_of_window_edge(60)
        statuses = []
        for i in range(8):
            # A new client each time: a new TCP + TLS connection, accepted by either process.
            with gateway.client(headers=auth) as http:
                statuses.append(http.post(SUBMIT, json={"note": f"n{i}"}).status_code)
    assert sorted(statuses) == [202] * 5 + [429] * 3
    assert statuses[:5] == [202] * 5


def test_queue_cap_holds_under_a_concurrent_burst(
    make_client: Any, keyring: KeyRing, gateway_server: Gateway, redis_client: redis.Redis
) -> None:
    """20 simultaneous submissions against a cap of 3 accept exactly 3: check and reserve are
    one atomic step, and the refused ones leave no slot behind."""
    client: ApiClient = make_client(max_queued=3, rate_limit="1000/minute")
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}
    barrier = threading.Barrier(20)

    def fire(i: int) -> int:
        with gateway_server.client(headers=auth) as http:
            barrier.wait(timeout=10)
            return http.post("/v1/tasks/test.parked", json={"note": f"burst {i}"}).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(fire, range(20)))
    assert codes.count(202) == 3, codes
    assert codes.count(429) == 17, codes
    assert redis_client.zcard(queued_key(client.client_id)) == 3
    assert redis_client.zcard(owner_index(client.client_id)) == 3
