"""One scrape counts the whole deployment: two gateway processes, two worker processes.

Every outcome goes through this module's stack - successes, a failure that is
dead-lettered (and requeued by an admin, and dead-lettered again), a retried task, a task
that refuses its input, a forged envelope a worker refuses, and submissions the gateways
refuse (validation, leak guard, rate limit) - carrying a payload canary in every note and
a secret canary in every secret field. Then each gateway's ``/metrics`` must give the
exact deployment-wide counts with the documented names and labels, ``taskgate stats`` and
the admin stats route the per-task figures, and no canary may appear in any of them.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from security.keystore import KeyRing
from taskgate.cli.main import app
from tests.support.messages import push_raw, wait_audit
from tests.support.metrics_run import PAYLOAD_CANARY, SECRET_CANARY, Deployment, Q, Samples
from tests.support.metrics_run import busy_gauges as _busy
from tests.support.metrics_run import forged_message as _forged
from tests.support.metrics_run import scrape as _scrape
from tests.support.metrics_run import series as _series
from tests.support.metrics_run import submit as _submit
from tests.support.metrics_run import task_labels as _task
from tests.support.processes import wait_for
from tests.support.stacks import SHORT_TIMINGS, stack_with_gateway
from workers.contract import metrics as m
from workers.contract.keys import METRICS_GATEWAY, METRICS_WINDOW_PREFIX, METRICS_WORKER

pytestmark = pytest.mark.integration
AWS_KEY = "AK" + "IA" + "IOSFODNN7" + "EXAMPLE"
ACTIVE = "celery_worker_tasks_active"


# What the run below must add up to, per counter (label sets exactly, zero series absent).
EXPECTED: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
    "celery_task_sent_total": {
        _task("mt.ok"): 7, _task("mt.boom"): 1, _task("mt.flaky"): 1, _task("mt.refuses"): 1,
        _task("mt.waits"): 1,
    },
    "celery_task_received_total": {
        _task("mt.ok"): 8, _task("mt.boom"): 2, _task("mt.flaky"): 2, _task("mt.refuses"): 1,
        _task("mt.waits"): 1,
    },
    "celery_task_started_total": {
        _task("mt.ok"): 7, _task("mt.boom"): 2, _task("mt.flaky"): 2, _task("mt.refuses"): 1,
        _task("mt.waits"): 1,
    },
    "celery_task_succeeded_total": {_task("mt.ok"): 7, _task("mt.flaky"): 1},
    "celery_task_failed_total": {_task("mt.boom"): 2, _task("mt.refuses"): 1},
    "celery_task_retried_total": {_task("mt.flaky"): 1},
    "celery_task_rejected_total": {_task("mt.ok"): 1},
    "celery_task_revoked_total": {_task("mt.waits"): 1},
    "taskgate_submissions_total": {
        (("outcome", "accepted"), ("task", "mt.ok")): 7,
        (("outcome", "accepted"), ("task", "mt.boom")): 1,
        (("outcome", "accepted"), ("task", "mt.flaky")): 1,
        (("outcome", "accepted"), ("task", "mt.refuses")): 1,
        (("outcome", "accepted"), ("task", "mt.waits")): 1,
        (("outcome", "idempotent_replay"), ("task", "mt.ok")): 1,
        (("outcome", "invalid-payload"), ("task", "mt.ok")): 1,
        (("outcome", "leak_detected"), ("task", "mt.ok")): 1,
        (("outcome", "rate-limited"), ("task", "mt.ok")): 1,
    },
    "taskgate_input_refusals_total": {
        (("check", "validation"), ("task", "mt.ok")): 1,
        (("check", "leak_guard"), ("task", "mt.ok")): 1,
    },
    "taskgate_limit_refusals_total": {(("scope", "client"),): 1},
    "taskgate_envelope_refusals_total": {(("reason", "bad_signature"),): 1},
    "taskgate_dead_letters_total": {(("task", "mt.boom"),): 2},
    "taskgate_dead_letter_replays_total": {(("task", "mt.boom"),): 1},
    "taskgate_task_failures_total": {
        (("task", "mt.boom"), ("type", "ValueError")): 2,
        (("task", "mt.flaky"), ("type", "ConnectionError")): 1,
        (("task", "mt.refuses"), ("type", "InputRejectedError")): 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Any,
    stack_env: dict[str, str],
    admin_token: str,
) -> Iterator[Deployment]:
    """Its own Redis, two gateway processes and two worker processes."""
    folder = tmp_path_factory.mktemp("metrics")
    timings = {
        **SHORT_TIMINGS,
        "TASKGATE_METRICS_FLUSH_INTERVAL": "0.5",
        "TASKGATE_AUDIT_ANCHOR_INTERVAL": "1",  # signed checkpoints: their age is a gauge
        "TASKGATE_HEARTBEAT_INTERVAL": "1",  # running-task counts travel with the beats
        # Its checkpoints stay in its own folder, not the session stack's anchor file.
        "TASKGATE_AUDIT_ARCHIVE_DIR": str(folder / "archive"),
    }
    with stack_with_gateway(
        folder,
        pki=pki,
        stack_env=stack_env,
        admin_token=admin_token,
        modules='["tests.integration.metrics_tasks"]',
        timings=timings,
    ) as stack:
        first = stack.gateway
        assert first is not None
        second = stack.start_gateway()  # a second gateway process (stack.gateway now)
        stack.start_worker(concurrency=1)
        stack.start_worker(concurrency=1)
        yield Deployment(stack, [first, second])


@pytest.fixture(scope="module")
def ran(deployment: Deployment, keyring: KeyRing) -> dict[str, Any]:
    """Run every outcome (the requeued dead letter twice) across both gateways; the number
    of tokens issued, and the running-task gauges while one task ran."""
    stack = deployment.stack
    first, second = deployment.gateways
    note = f"note {PAYLOAD_CANARY}"
    owner = stack.new_client()
    limited = stack.new_client(rate_limit="2/minute")
    finals: list[str] = []
    with first.client(headers={"Authorization": f"Bearer {owner.token()}"}) as http_a:
        finals += [_submit(http_a, "mt.ok", note) for _ in range(2)]
        body, key = {"note": note, "token": SECRET_CANARY}, {"Idempotency-Key": "metrics-1"}
        keyed = [http_a.post("/v1/tasks/mt.ok", json=body, headers=key) for _ in range(2)]
        assert [r.status_code for r in keyed] == [202, 202]
        assert keyed[1].headers["Idempotent-Replayed"] == "true"  # the same task, not run again
        finals.append(keyed[0].json()["id"])
        boom = _submit(http_a, "mt.boom", note)
        finals.append(_submit(http_a, "mt.flaky", note))
        _submit(http_a, "mt.ok", f"key {AWS_KEY} {PAYLOAD_CANARY}", status=422)  # leak guard
    with second.client(headers={"Authorization": f"Bearer {owner.token()}"}) as http_b:
        finals += [_submit(http_b, "mt.ok", note) for _ in range(2)]
        finals.append(_submit(http_b, "mt.refuses", note))
        bad = http_b.post("/v1/tasks/mt.ok", json={"note": note, "extra": PAYLOAD_CANARY})
        assert bad.status_code == 422  # validation
        waiting = _submit(http_b, "mt.waits", note)
        stack.wait_state(waiting, frozenset({"started"}))
        # the running task shows in its worker's next heartbeat
        busy = wait_for(
            lambda: _busy(first, stack.admin_token),
            timeout=20,
            what="the running task in a heartbeat",
        )
        assert http_b.delete(f"/v1/tasks/{waiting}").status_code == 202  # cancelled running
        stack.wait_state(waiting, frozenset({"revoked"}))
    with second.client(headers={"Authorization": f"Bearer {limited.token()}"}) as http_l:
        finals += [_submit(http_l, "mt.ok", note) for _ in range(2)]
        _submit(http_l, "mt.ok", note, status=429)  # the client's rate limit
    with first.client() as anonymous:
        refused = anonymous.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": owner.client_id,
                "client_secret": SECRET_CANARY,
            },
        )
        assert refused.status_code == 401
    forged = str(uuid.uuid4())
    with stack.redis_client() as client:
        push_raw(client, _forged(keyring, forged))
        assert wait_audit(client, forged, "task.refused").record.reason == "bad_signature"
    for task_id in finals:
        stack.wait_state(task_id)
    stack.wait_state(boom, frozenset({"dead_lettered"}))
    with stack.admin_http() as admin:
        assert admin.post(f"/v1/admin/dead-letters/{boom}/requeue").status_code == 202
    wait_for(
        lambda: len(stack.audited(boom, "task.dead_lettered")) == 2,
        timeout=30,
        what="the requeued dead letter failing again",
    )
    return {"tokens": 3, "busy": busy}


def _counters(samples: Samples) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {name: _series(samples, name) for name in EXPECTED}


def _settled(deployment: Deployment, admin_token: str) -> Samples:
    """The first scrape whose counts are the expected ones (other processes flush every
    half second), else the last one."""
    last: list[Samples] = []

    def scrape() -> bool:
        _, samples = _scrape(deployment.gateways[0], admin_token)
        last[:] = [samples]
        return _counters(samples) == EXPECTED

    with contextlib.suppress(AssertionError):  # the caller's assertions show the difference
        wait_for(scrape, timeout=15, what="the counts to settle")
    return last[0]


def test_one_scrape_gives_the_deployment_wide_counts(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    """Each counter has exactly the expected label sets and values, whichever gateway
    process is scraped."""
    samples = _settled(deployment, admin_token)
    assert _counters(samples) == EXPECTED
    _, other = _scrape(deployment.gateways[1], admin_token)
    assert _counters(other) == EXPECTED
    tokens = _series(samples, "taskgate_tokens_total")
    assert tokens[(("outcome", "issued"),)] == ran["tokens"]
    assert sum(v for k, v in tokens.items() if k != (("outcome", "issued"),)) == 1


def test_runtime_and_queue_wait_histograms_count_every_run(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    """One runtime and one queue-wait observation per started run, in cumulative buckets."""
    samples = _settled(deployment, admin_token)
    started = EXPECTED["celery_task_started_total"]
    for family in ("celery_task_runtime", "celery_task_queue_wait_time"):
        counts = _series(samples, f"{family}_count")
        assert counts == started, family
        for labels, count in counts.items():
            inf = samples[(f"{family}_bucket", tuple(sorted((*labels, ("le", "+Inf")))))]
            assert inf == count
            assert samples[(f"{family}_sum", labels)] >= 0
    submit = _series(samples, "taskgate_submit_seconds_count")
    assert submit == {(("task", "mt.ok"),): 7, (("task", "mt.boom"),): 1,
                      (("task", "mt.flaky"),): 1, (("task", "mt.refuses"),): 1,
                      (("task", "mt.waits"),): 1}  # fmt: skip


def test_scrape_time_gauges_see_both_workers_and_the_queues(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    """Two workers up (from their heartbeats), nothing running or queued, audit counted."""
    _, samples = _scrape(deployment.gateways[0], admin_token)
    up = _series(samples, "celery_worker_up")
    assert len(up) == 2
    assert set(up.values()) == {1.0}
    assert {k[0][0] for k in up} == {"hostname"}
    # as of each worker's last beat: idle once the beats after the last task came in
    active = wait_for(
        lambda: (
            (a := _series(_scrape(deployment.gateways[0], admin_token)[1], ACTIVE))
            and set(a.values()) == {0.0}
            and a
        ),
        timeout=15,
        what="both workers idle in their heartbeats",
    )
    assert set(active) == set(up)
    assert sorted(ran["busy"].values()) == [0.0, 1.0]  # one worker busy while mt.waits ran
    assert _series(samples, "celery_queue_length") == {(("queue_name", Q),): 0}
    appends = _series(samples, "taskgate_audit_appends_total")
    assert appends[(("role", "gateway"),)] > 0
    assert appends[(("role", "worker"),)] > 0
    assert samples[("taskgate_dead_letters_pending", ())] == 1
    age = wait_for(
        lambda: _scrape(deployment.gateways[1], admin_token)[1].get(
            ("taskgate_audit_checkpoint_age_seconds", ())
        ),
        timeout=15,
        what="an audit checkpoint",
    )
    assert 0 <= age < 3600


def test_metric_families_and_label_names_are_the_documented_ones(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    text, _ = _scrape(deployment.gateways[0], admin_token)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric in m.DEFINITIONS:
        family = families[metric.name]
        assert family.type == metric.kind
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(metric.labels), sample


def test_no_canary_in_metrics_stats_or_their_redis_keys(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    """Neither canary - in payloads, secrets, exception messages, a forged envelope and
    refused requests - reaches /metrics, the admin stats, `taskgate stats` or the hashes."""
    stack = deployment.stack
    texts = [_scrape(gateway, admin_token)[0] for gateway in deployment.gateways]
    with stack.admin_http() as admin:
        texts.append(admin.get("/v1/admin/stats").text)
    texts.append(CliRunner().invoke(app, ["stats", "--json"], env=stack.env).output)
    with stack.redis_client() as client:
        for key in [METRICS_GATEWAY, METRICS_WORKER, *client.keys(f"{METRICS_WINDOW_PREFIX}*")]:
            texts.append(repr(client.hgetall(key)))
    for canary in (PAYLOAD_CANARY, SECRET_CANARY, AWS_KEY):
        for text in texts:
            assert canary not in text


def test_stats_show_success_rate_runtime_and_failure_types(
    deployment: Deployment, ran: dict[str, Any], admin_token: str
) -> None:
    """The admin stats route and `taskgate stats --json` agree on the window's figures."""
    _settled(deployment, admin_token)
    with deployment.stack.admin_http() as admin:
        response = admin.get("/v1/admin/stats", params={"window": 600})
    assert response.status_code == 200, response.text
    routed = response.json()["tasks"]
    result = CliRunner().invoke(
        app, ["stats", "--json", "--window", "600"], env=deployment.stack.env
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)["tasks"]
    assert routed == printed
    assert routed["mt.ok"]["success_rate"] == 1.0
    assert routed["mt.ok"]["succeeded"] == 7
    assert routed["mt.ok"]["rejected"] == 1
    assert routed["mt.boom"]["success_rate"] == 0.0
    assert routed["mt.boom"]["failure_types"] == {"ValueError": 2}
    assert routed["mt.flaky"]["success_rate"] == 1.0
    assert routed["mt.flaky"]["retried"] == 1
    assert routed["mt.refuses"]["failure_types"] == {"InputRejectedError": 1}
    assert routed["mt.waits"]["revoked"] == 1
    assert routed["mt.waits"]["success_rate"] is None  # nothing finished for good
    p50, p95 = routed["mt.ok"]["runtime_p50_seconds"], routed["mt.ok"]["runtime_p95_seconds"]
    assert 0 <= p50 <= p95 <= 5
    table = CliRunner().invoke(app, ["stats", "--window", "600"], env=deployment.stack.env)
    assert table.exit_code == 0, table.output
    lines = {line.split()[0]: line for line in table.output.splitlines()[2:]}
    assert lines["mt.ok"].split()[1:3] == ["7", "0"]  # succeeded, failed
    assert "100.0%" in lines["mt.ok"]
    assert lines["mt.boom"].rstrip().endswith("ValueError 2")


def test_stats_window_outside_its_bounds_is_422(deployment: Deployment) -> None:
    with deployment.stack.admin_http() as admin:
        response = admin.get("/v1/admin/stats", params={"window": 10})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
