"""Structured logs: one event per step of a task's life, the gateway's request id carried to
the worker, and neither a payload nor a secret in any line, JSON or text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from tests.support.gateways import Gateway
from tests.support.logs import register_log
from tests.support.observability import OBS_MODULES, Canaries, PathsRun, log_text, run_every_path
from tests.support.processes import wait_for
from tests.support.stacks import SHORT_TIMINGS, PrivateStack, private_stack

pytestmark = pytest.mark.integration

stack = private_stack("lifecycle-logs", modules=OBS_MODULES, timings=SHORT_TIMINGS)

LIFECYCLE_FIELDS = {"task_id", "task_name", "queue", "attempt", "request_id"}


def _gateway(stack: PrivateStack, log_format: str) -> Gateway:
    """A gateway logging at INFO (its access lines too) in ``log_format``."""
    stack.env["TASKGATE_LOG_FORMAT"] = log_format
    port = free_port()
    child = start_child(
        f"gateway-{log_format}",
        taskgate_argv("serve", "--port", str(port), "--log-level", "info"),
        log_path=stack.folder / "logs" / f"gateway-{log_format}.log",
        env=stack.env,
    )
    register_log(child)
    stack.others.append(child)
    gateway = Gateway(child=child, url=f"https://localhost:{port}", ca_file=stack.pki.ca)

    def healthy() -> bool:
        try:
            with gateway.client() as http:
                return http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60, what="gateway up")
    stack.gateway = gateway
    return gateway


@pytest.fixture
def json_run(stack: PrivateStack) -> Iterator[tuple[PathsRun, Canaries, Child, Gateway]]:
    gateway = _gateway(stack, "json")
    worker = stack.start_worker(concurrency=2)
    canaries = Canaries()
    try:
        yield run_every_path(stack, canaries), canaries, worker, gateway
    finally:
        stack.stop_workers()


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wait_events(worker: Child, run: PathsRun) -> list[dict[str, Any]]:
    """The worker's JSON lines once every task's last event and both refusals are in."""

    def complete() -> list[dict[str, Any]] | None:
        events = _events(worker.log_path.read_text(errors="replace"))
        ended = {e.get("task_id") for e in events if e.get("outcome")}
        needed = set(run.tasks) | set(run.refused)
        return events if needed <= ended else None

    return list(wait_for(complete, timeout=30, what="every task's last event logged"))


def test_json_lifecycle_events_carry_their_fields_and_the_request_id(
    json_run: tuple[PathsRun, Canaries, Child, Gateway],
) -> None:
    """Every worker line is a JSON object; each task has received, started and an end
    event with task id, name, queue, attempt and the submitting request's id; ends say
    the outcome, runtime and failure type; retries say their delay."""
    run, _canaries, worker, gateway = json_run
    events = _wait_events(worker, run)
    for event in events:
        assert {"timestamp", "level", "logger", "event"} <= event.keys(), event
    by_task: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("logger") == "taskgate.lifecycle":
            by_task.setdefault(str(event["task_id"]), []).append(event)
    for task_id, (name, request_id) in run.tasks.items():
        steps = by_task[task_id]
        names = [e["event"] for e in steps]
        assert names[0] == "task.received", names
        assert "task.started" in names
        for event in steps:
            assert event.keys() >= LIFECYCLE_FIELDS, event
            assert event["task_name"] == name
            assert event["queue"] == "taskgate"
            assert event["request_id"] == request_id
        started = next(e for e in steps if e["event"] == "task.started")
        assert started["queue_wait"] >= 0
        last = steps[-1]
        assert last["event"] == f"task.{last['outcome']}"
        if name != "obs.hangs":  # its pool process was killed: no runtime measured
            assert last["runtime"] >= 0
    outcome = {tid: by_task[tid][-1] for tid in run.tasks}
    finals = {run.tasks[tid][0]: e for tid, e in outcome.items()}
    assert finals["obs.echo"]["outcome"] == "succeeded"
    assert "failure_type" not in finals["obs.echo"]
    assert finals["obs.fails"]["outcome"] == "dead_lettered"
    assert finals["obs.fails"]["failure_type"] == "ValueError"
    assert finals["obs.rejects"]["outcome"] == "failed"
    assert finals["obs.rejects"]["failure_type"] == "InputRejectedError"
    assert finals["obs.always_retries"]["outcome"] == "dead_lettered"
    assert finals["obs.always_retries"]["failure_type"] == "ConnectionError"
    assert finals["obs.hangs"]["outcome"] == "dead_lettered"
    assert finals["obs.hangs"]["failure_type"] == "TimeLimitExceeded"
    flaky = next(tid for tid, (n, _r) in run.tasks.items() if n == "obs.flaky")
    retried = [e for e in by_task[flaky] if e["event"] == "task.retried"]
    assert len(retried) == 1
    assert retried[0]["failure_type"] == "ConnectionError"
    assert retried[0]["delay"] > 0
    assert retried[0]["attempt"] == 1
    assert by_task[flaky][-1]["attempt"] == 2
    assert by_task[flaky][-1]["outcome"] == "succeeded"
    refusals = {e["task_id"]: e for e in events if e.get("event") == "task.refused"}
    unsealed, moved = run.refused
    assert refusals[unsealed]["reason"] == "not_sealed"
    assert refusals[moved]["reason"] == "task_name_mismatch"
    # Celery's own per-task lines are gone (they carry return values and exception text).
    assert not any("succeeded in" in str(e["event"]) for e in events)
    assert not any("raised unexpected" in str(e["event"]) for e in events)
    # The gateway's access line of a submission names the same request id.
    gateway_events = _events(gateway.child.log_path.read_text(errors="replace"))
    access = [e for e in gateway_events if e.get("logger") == "uvicorn.access"]
    for _name, request_id in run.tasks.values():
        assert any(e.get("request_id") == request_id for e in access), request_id


def test_json_logs_hold_no_canary(
    stack: PrivateStack, json_run: tuple[PathsRun, Canaries, Child, Gateway]
) -> None:
    """Neither canary is in any line any process of the stack wrote (JSON format)."""
    run, canaries, worker, _gateway = json_run
    _wait_events(worker, run)
    text = log_text(*stack.log_files())
    assert "task.dead_lettered" in text
    for canary in canaries.all():
        assert canary not in text


def test_text_logs_hold_no_canary(stack: PrivateStack) -> None:
    """The same paths with TASKGATE_LOG_FORMAT=text: readable lines, neither canary."""
    _gateway(stack, "text")
    worker = stack.start_worker(concurrency=2)
    canaries = Canaries()
    try:
        run = run_every_path(stack, canaries)
        wait_for(
            lambda: worker.log_tail(4000).count("task.dead_lettered") >= 2,
            timeout=30,
            what="dead letters logged",
        )
    finally:
        stack.stop_workers()
    text = worker.log_path.read_text(errors="replace")
    assert not text.lstrip().startswith("{")
    for task_id in run.tasks:
        assert task_id in text
    everything = log_text(*stack.log_files())
    for canary in canaries.all():
        assert canary not in everything
