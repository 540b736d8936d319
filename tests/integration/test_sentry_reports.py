"""Sentry: gateway and worker errors reach the ingest endpoint, with neither canary in them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certs.material import CertPaths
from tests.support.observability import OBS_MODULES, Canaries, run_every_path
from tests.support.processes import wait_for
from tests.support.sentry_ingest import Ingest, sentry_ingest
from tests.support.stacks import SHORT_TIMINGS, PrivateStack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingest() -> Iterator[Ingest]:
    with sentry_ingest() as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
    ingest: Ingest,
) -> Iterator[PrivateStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("sentry"),
        pki=pki,
        stack_env=stack_env | {"TASKGATE_SENTRY_DSN": ingest.dsn},
        admin_token=admin_token,
        modules=OBS_MODULES,
        timings=SHORT_TIMINGS,
    )
    try:
        stack.start_gateway()
        stack.start_worker(concurrency=2)
        yield stack
    finally:
        stack.stop()


def _exception_types(events: list[dict[str, Any]]) -> set[str]:
    return {
        str(value.get("type"))
        for event in events
        for value in (event.get("exception") or {}).get("values") or []
    }


def test_errors_are_reported_without_a_payload_or_secret(
    stack: PrivateStack, ingest: Ingest
) -> None:
    """A gateway 500 (a validator failing with the payload in its message), the worker's
    task failures and a run stopped at its hard time limit (decided in the worker's main
    process) arrive as events naming the exception types and tasks; no byte the
    ingest endpoint received holds either canary."""
    canaries = Canaries()
    run_every_path(stack, canaries)
    client = stack.new_client()
    with client.http() as http:
        response = http.post(
            "/v1/tasks/obs.explodes",
            json={"note": canaries.payload, "token": canaries.secret},
        )
    assert response.status_code == 500
    for canary in canaries.all():
        assert canary not in response.text

    def reported() -> bool:
        types = _exception_types(ingest.events())
        return {"RuntimeError", "ValueError", "ConnectionError", "TimeLimitExceeded"} <= types

    wait_for(reported, timeout=30, what="gateway and worker errors reported")
    events = ingest.events()
    transactions = {str(e.get("transaction")) for e in events}
    assert any(t.endswith("/v1/tasks/obs.explodes") for t in transactions), transactions
    assert {"obs.fails", "obs.rejects", "obs.always_retries", "obs.hangs"} <= transactions
    everything = ingest.raw()
    for canary in canaries.all():
        assert canary.encode() not in everything
    for event in events:
        for value in (event.get("exception") or {}).get("values") or []:
            assert value.get("value") == ""
            for frame in (value.get("stacktrace") or {}).get("frames") or []:
                assert "vars" not in frame
        assert "extra" not in event
        assert set(event.get("request") or {}) <= {"method", "url"}
    logs = "\n".join(p.read_text(errors="replace") for p in stack.log_files())
    for canary in canaries.all():
        assert canary not in logs
    assert Path(stack.env["TASKGATE_STATE_DIR"]).exists()
