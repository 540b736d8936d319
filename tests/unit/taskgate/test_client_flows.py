"""The SDK's shared logic (``taskgate.client._flows``) step by step: what it sends, how long
it waits, when it gives up - the same for the blocking and the asyncio client."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from taskgate.client import (
    ConnectionFailed,
    RateLimited,
    Task,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from taskgate.client._flows import Flow, Flows, Item, Send, Sleep

TOKEN = {"access_token": "tok-abc", "token_type": "Bearer", "expires_in": 600, "scope": "x"}
TASK_ID = "2f1c7f7e-8a52-4c55-9a43-2c1a1d1e0a11"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _flows(clock: Clock | None = None, **options: Any) -> Flows:
    return Flows("https://gw.test", "demo-1a2b3c4d", "s3cret", clock=clock or Clock(), **options)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _problem(status: int, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {"type": "https://x/p", "title": "T", "status": status, "detail": "d", **extra}
    return httpx.Response(status, json=body, headers=headers)


def _drive(
    flow: Flow[Any], replies: list[Any], clock: Clock | None = None
) -> tuple[Any, list[Any]]:
    """Run ``flow``, answering each Send with the next of ``replies``; return the flow's
    value and the steps it took (Sends as (method, path, headers), Sleeps as seconds)."""
    steps: list[Any] = []
    reply: Any = None
    while True:
        try:
            step = flow.send(reply)
        except StopIteration as stop:
            return stop.value, steps
        reply = None
        if isinstance(step, Send):
            req = step.request
            steps.append((req.method, req.url.path, dict(req.headers)))
            reply = replies.pop(0)
        elif isinstance(step, Sleep):
            steps.append(step.seconds)
            if clock is not None:
                clock.now += step.seconds
        elif isinstance(step, Item):
            steps.append(("item", step.value.id))


def _accepted() -> httpx.Response:
    return _json(202, {"id": TASK_ID, "status": "queued", "links": {"self": "/x"}})


def test_submit_signs_in_once_and_caches_the_token() -> None:
    """The first call fetches a token; the next reuses it."""
    flows = _flows()
    _, steps = _drive(flows.submit("t.a", {"a": 1}), [_json(200, TOKEN), _accepted()])
    _, again = _drive(flows.submit("t.a", {"a": 1}), [_accepted()])
    assert [s[1] for s in steps] == ["/v1/token", "/v1/tasks/t.a"]
    assert [s[1] for s in again] == ["/v1/tasks/t.a"]
    assert again[0][2]["authorization"] == "Bearer tok-abc"


def test_token_is_refreshed_before_it_expires() -> None:
    """Within refresh_margin of expiry the next call signs in again."""
    clock = Clock()
    flows = _flows(clock, refresh_margin=30)
    _drive(flows.get(TASK_ID), [_json(200, TOKEN), _json(200, {"id": TASK_ID, "status": "queued"})])
    clock.now += 575
    _, steps = _drive(
        flows.get(TASK_ID), [_json(200, TOKEN), _json(200, {"id": TASK_ID, "status": "queued"})]
    )
    assert [s[1] for s in steps] == ["/v1/token", f"/v1/tasks/{TASK_ID}"]


def test_a_401_with_a_cached_token_signs_in_again_once() -> None:
    """A revoked token: one fresh sign-in and one retry, then the answer stands."""
    flows = _flows()
    ok = _json(200, {"id": TASK_ID, "status": "queued"})
    _drive(flows.get(TASK_ID), [_json(200, TOKEN), ok])
    task, steps = _drive(flows.get(TASK_ID), [_problem(401), _json(200, TOKEN), ok])
    assert task.status == "queued"
    assert [s[1] for s in steps] == [f"/v1/tasks/{TASK_ID}", "/v1/token", f"/v1/tasks/{TASK_ID}"]


def test_submit_retries_drops_429_and_503_with_the_same_key_honouring_retry_after() -> None:
    """Every retry carries the first try's Idempotency-Key; Retry-After sets the pause."""
    flows = _flows()
    replies = [
        _json(200, TOKEN),
        httpx.ReadError("dropped"),
        _problem(429, {"Retry-After": "2"}),
        _problem(503, {"Retry-After": "1"}),
        _problem(409, {"Retry-After": "1"}),  # the same key still in flight
        _accepted(),
    ]
    accepted, steps = _drive(flows.submit("t.a", {"a": 1}), replies)
    sends = [s for s in steps if isinstance(s, tuple)][1:]
    keys = {s[2]["idempotency-key"] for s in sends}
    assert keys == {accepted.idempotency_key}
    assert len(sends) == 5
    sleeps = [s for s in steps if isinstance(s, float)]
    assert sleeps[1:] == [2.0, 1.0, 1.0]
    assert 0 < sleeps[0] <= 0.5  # backoff after a dropped connection


def test_retries_are_bounded() -> None:
    """After ``retries`` repeats the last answer's error is raised."""
    flows = _flows(retries=2)
    replies = [_json(200, TOKEN)] + [_problem(503, {"Retry-After": "1"})] * 3
    with pytest.raises(Unavailable) as unavailable:
        _drive(flows.submit("t.a", {}), replies)
    assert unavailable.value.retry_after == 1.0
    with pytest.raises(ConnectionFailed):
        _drive(flows.get(TASK_ID), [httpx.ConnectError("no")] * 3)


def test_a_retry_after_longer_than_max_retry_wait_is_raised_at_once() -> None:
    """Not slept through: the caller decides what to do with a long wait."""
    flows = _flows(max_retry_wait=5)
    with pytest.raises(RateLimited) as limited:
        _drive(flows.submit("t.a", {}), [_json(200, TOKEN), _problem(429, {"Retry-After": "60"})])
    assert limited.value.retry_after == 60.0


def test_validation_errors_name_the_fields() -> None:
    """A 422's errors become FieldError with the dotted path, kind and message."""
    errors = [{"field": "a.b", "kind": "missing", "message": "is required"}]
    with pytest.raises(ValidationFailed) as invalid:
        _drive(_flows().submit("t.a", {}), [_json(200, TOKEN), _problem(422, errors=errors)])
    assert invalid.value.fields == ("a.b",)
    assert invalid.value.errors[0].kind == "missing"


def test_wait_backs_off_then_times_out() -> None:
    """wait() polls at growing intervals (capped) and raises WaitTimeout at its deadline."""
    clock = Clock()
    queued = {"id": TASK_ID, "status": "queued"}
    replies = [_json(200, TOKEN)] + [_json(200, queued) for _ in range(50)]
    with pytest.raises(WaitTimeout) as timed_out:
        _drive(_flows(clock).wait(TASK_ID, 10, poll=0.25, max_poll=2), replies, clock)
    assert timed_out.value.task.status == "queued"


def test_tasks_follows_next_until_the_last_page() -> None:
    """tasks() yields every item of every page, passing ``next`` as ``before``."""
    page1 = {"items": [{"id": "a", "status": "queued"}], "next": 5.0}
    page2 = {"items": [{"id": "b", "status": "queued"}], "next": None}
    _, steps = _drive(
        _flows().tasks(status="queued", page_size=1),
        [_json(200, TOKEN), _json(200, page1), _json(200, page2)],
    )
    assert [s for s in steps if s[0] == "item"] == [("item", "a"), ("item", "b")]


def test_only_https_gateways() -> None:
    """A plain-HTTP base URL is refused before anything is sent."""
    from taskgate.client import Client

    with pytest.raises(ValueError, match="HTTPS"):
        Client("http://gw.test", "demo-1a2b3c4d", "s3cret")


def test_an_untrusted_certificate_is_not_retried() -> None:
    """A certificate check that failed fails again: ConnectionFailed at once, no pause."""
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as cause:
            raise httpx.ConnectError("tls") from cause
    except httpx.ConnectError as exc:
        error = exc
    with pytest.raises(ConnectionFailed, match="certificate not trusted"):
        _drive(_flows().get(TASK_ID), [error])  # one reply: a retry would find none


def test_a_task_view_carries_its_runs_apart_from_its_attempts() -> None:
    """``runs`` above ``attempts`` (a cut-off run ran again) reaches the SDK's Task."""
    task = Task.from_json(
        {"id": "t1", "task": "x", "status": "succeeded", "attempts": 1, "runs": 2}
    )
    assert (task.attempts, task.runs) == (1, 2)
    assert Task.from_json({"id": "t2", "task": "x", "status": "queued"}).runs == 0
