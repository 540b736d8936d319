"""A burst of submissions across a Redis restart, and waiting for every task to finish.

The reliability tests restart a private stack's Redis while ``BURST`` submissions are
under way, then check that every accepted task reaches a final state.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.processes import wait_for
from tests.support.stacks import PrivateStack
from workers.contract.wire import decode_record, task_key

BURST = 500


class Burst:
    """Submit ``BURST`` tasks from a few threads; remember what each answer was and when.

    A thread that gets a 503 pauses briefly before its next submission, as a client
    honouring Retry-After would (shortened), so the burst outlasts the outage.
    """

    def __init__(self, stack: PrivateStack, token: str) -> None:
        self.stack = stack
        self.token = token
        self.answers: list[tuple[float, int, str]] = []
        self.lock = threading.Lock()
        self.local = threading.local()
        self.clients: list[httpx.Client] = []

    def _http(self) -> httpx.Client:
        http = getattr(self.local, "http", None)
        if http is None:
            gateway = self.stack.gateway
            if gateway is None:
                raise RuntimeError("no gateway")
            http = gateway.client(headers={"Authorization": f"Bearer {self.token}"})
            self.local.http = http
            with self.lock:
                self.clients.append(http)
        return http

    def close(self) -> None:
        for http in self.clients:
            http.close()

    def submit(self, index: int) -> None:
        try:
            response = self._http().post("/v1/tasks/test.quick", json={"note": f"n{index}"})
            status = response.status_code
            task_id = response.json().get("id", "") if status == 202 else ""
        except httpx.HTTPError as exc:
            status, task_id = 0, type(exc).__name__
        with self.lock:
            self.answers.append((time.monotonic(), status, task_id))
        if status != 202:
            time.sleep(0.2)

    def done(self) -> int:
        with self.lock:
            return len(self.answers)


def burst_across_a_redis_restart(stack: PrivateStack) -> tuple[list[str], Counter[int]]:
    """Submit BURST tasks; SIGTERM and restart Redis once 120 have been answered.

    Returns the ids that got a 202 and the count of every status.
    """
    burst = Burst(stack, stack.new_client().token())
    window: dict[str, float] = {}

    def restart_when_under_way() -> None:
        wait_for(lambda: burst.done() >= 120, timeout=60, what="the burst getting under way")
        window["down"] = time.monotonic()
        stack.restart_redis(down_for=1.5)
        window["up"] = time.monotonic()

    restarter = threading.Thread(target=restart_when_under_way)
    restarter.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(burst.submit, range(BURST)))
    finally:
        burst.close()
        restarter.join()
    statuses = Counter(status for _, status, _ in burst.answers)
    assert statuses[503] > 0, "the outage did not overlap the burst"
    assert any(at < window["down"] for at, status, _ in burst.answers if status == 202)
    assert any(at > window["up"] for at, status, _ in burst.answers if status == 202)
    # Fail closed: during the outage a submission is refused with 503, never a 500.
    assert set(statuses) <= {202, 503}, statuses
    return [task_id for _, status, task_id in burst.answers if status == 202], statuses


def task_states(stack: PrivateStack, task_ids: list[str]) -> dict[str, str]:
    """The state of each task in ``task_ids`` (``missing`` without a record)."""
    with stack.redis_client() as redis_client, redis_client.pipeline() as pipe:
        for task_id in task_ids:
            pipe.hgetall(task_key(task_id))
        records = pipe.execute()
    return {
        task_id: decode_record(raw).get("state", "missing")
        for task_id, raw in zip(task_ids, records, strict=True)
    }


def wait_all_final(stack: PrivateStack, task_ids: list[str], timeout: float) -> dict[str, str]:
    """Wait until every task in ``task_ids`` has succeeded or been dead-lettered; their states."""

    def all_final() -> dict[str, str] | None:
        states = task_states(stack, task_ids)
        done = all(state in {"succeeded", "dead_lettered"} for state in states.values())
        return states if done else None

    try:
        return dict(wait_for(all_final, timeout=timeout, what="every accepted task", interval=1))
    except AssertionError:
        counts = Counter(task_states(stack, task_ids).values())
        raise AssertionError(f"{len(task_ids)} accepted, final states {counts}") from None
