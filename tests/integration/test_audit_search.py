"""`taskgate audit search` and the HTTP audit filters: ISO times, target, JSON Lines."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from security.audit import AuditRecord, AuditWriter, Outcome
from security.keystore import KeyRing
from taskgate.cli.main import app
from tests.support.gateways import Gateway

pytestmark = pytest.mark.integration

T0 = 1796637600.0  # 2026-12-07T10:00:00Z


@pytest.fixture
def records(redis_client: redis.Redis, keyring: KeyRing) -> redis.Redis:
    """Four records an hour apart, by two actors, one of them denied."""
    writer = AuditWriter(redis_client, keyring.audit)
    rows: list[tuple[str, str, Outcome, str]] = [
        ("alice", "admin.clients.create", "ok", "billing-0123abcd"),
        ("bob", "admin.dlq.purge", "ok", "task-1"),
        ("alice", "admin.dlq.requeue", "denied", "task-2"),
        ("alice", "admin.clients.disable", "ok", "billing-0123abcd"),
    ]
    for i, (actor, action, outcome, target) in enumerate(rows):
        writer.append(
            AuditRecord.make(
                actor=actor, action=action, outcome=outcome, target=target, now=T0 + 3600 * i
            )
        )
    return redis_client


def _search(stack_env: dict[str, str], *args: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    env |= {k: v for k, v in stack_env.items() if k.startswith("TASKGATE_")}
    return CliRunner().invoke(app, ["audit", "search", *args], env=env)


def test_search_filters_by_iso_time_actor_and_target(
    records: redis.Redis, stack_env: dict[str, str]
) -> None:
    """--since/--until take ISO 8601; actor and target narrow; times print as ISO."""
    result = _search(
        stack_env,
        "--since", "2026-12-07T10:30Z", "--until", "2026-12-07T13:30:00+00:00",
        "--actor", "alice",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("2026-12-07T12:00:00Z  alice")
    assert "admin.dlq.requeue" in lines[0]
    assert "denied" in lines[0]
    assert lines[1].startswith("2026-12-07T13:00:00Z  alice")
    by_target = _search(stack_env, "--target", "billing-0123abcd", "--outcome", "ok")
    assert [ln.split()[2] for ln in by_target.stdout.splitlines()] == [
        "admin.clients.create",
        "admin.clients.disable",
    ]


def test_search_json_prints_json_lines_with_iso_times(
    records: redis.Redis, stack_env: dict[str, str]
) -> None:
    """--json: one JSON object a line, the chain fields plus an ISO ``when``."""
    result = _search(stack_env, "--json", "--action", "admin.dlq.purge")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    row = json.loads(line)
    assert (row["actor"], row["target"], row["when"]) == ("bob", "task-1", "2026-12-07T11:00:00Z")
    assert {"seq", "mac", "prev", "time"} <= set(row)


@pytest.mark.parametrize(
    "args", [["--since", "yesterday"], ["--until", "nan"], ["--outcome", "maybe"]]
)
def test_search_refuses_a_bad_filter_with_exit_2(
    records: redis.Redis, stack_env: dict[str, str], args: list[str]
) -> None:
    """An unreadable time or an unknown outcome: exit 2 and a one-line reason."""
    result = _search(stack_env, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("taskgate audit search: refused:")


def test_http_audit_takes_iso_times_and_a_target(
    records: redis.Redis, gateway_server: Gateway, admin_token: str
) -> None:
    """GET /v1/admin/audit?since=<ISO>&target=...: filtered, each item with ``when``."""
    with gateway_server.client(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        page = http.get(
            "/v1/admin/audit",
            params={"since": "2026-12-07T10:30:00Z", "target": "billing-0123abcd"},
        )
        bad = http.get("/v1/admin/audit", params={"since": "last tuesday"})
    assert page.status_code == 200, page.text
    assert [i["when"] for i in page.json()["items"]] == ["2026-12-07T13:00:00Z"]
    assert bad.status_code == 422


def test_http_audit_refuses_a_cursor_past_64_bits(
    gateway_server: Gateway, admin_token: str
) -> None:
    """?after= with a part Redis cannot hold is 422, not a storage error (503)."""
    with gateway_server.client(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        for path in ("/v1/admin/audit", "/v1/admin/audit/verify"):
            response = http.get(path, params={"after": "39029696904266022923-919016"})
            assert response.status_code == 422, (path, response.text)
