"""A flood of refused requests against the real gateway adds a bounded number of records."""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner

from security.audit import iter_records
from taskgate.cli.main import app
from tests.support.processes import wait_for
from tests.support.stacks import PrivateStack, private_stack

pytestmark = pytest.mark.integration

WINDOW = 2  # seconds: short, so that windows close within the test
FLOOD = 2000
TOKEN = "eyJ.flood-secret-token.x"
PAYLOAD = "flood-payload-value"
module_stack = private_stack(
    "audit-growth",
    modules='["tests.integration.sample_tasks"]',
    timings={"TASKGATE_AUDIT_REFUSAL_WINDOW": str(WINDOW)},
)


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    tg = {k: v for k, v in env.items() if k.startswith("TASKGATE_")}
    result = CliRunner().invoke(app, args, env={**clean, **tg})
    return result.exit_code, result.output


def _refusals(stack: PrivateStack, since: int) -> list[tuple[float, str, str]]:
    with stack.redis_client() as client:
        return [
            (e.record.time, e.record.actor, e.record.reason)
            for e in iter_records(client)
            if e.seq > since and e.record.action == "auth.refused"
        ]


def _head_seq(stack: PrivateStack) -> int:
    with stack.redis_client() as client:
        raw = client.get("tg:audit:head")
    return int(raw.split()[0]) if raw else 0


def _total(records: list[tuple[float, str, str]]) -> int:
    """Refusals the records account for: a summary's count, or 1 for a lone first record
    whose window has no summary."""
    summarised: dict[int, int] = {}
    firsts: list[int] = []
    for when, _actor, reason in records:
        if reason.startswith("summary "):
            count = int(reason.split()[1].removeprefix("count="))
            start = int(reason.split("window=")[1].split("+")[0])
            summarised[start // WINDOW] = summarised.get(start // WINDOW, 0) + count
        else:
            firsts.append(int(when // WINDOW))
    return sum(summarised.values()) + sum(1 for w in firsts if w not in summarised)


def test_a_bad_token_flood_adds_a_bounded_number_of_verifiable_records(
    module_stack: PrivateStack,
) -> None:
    """2,000 bad-token requests over HTTPS: at most two records per window, counts add up,
    `taskgate audit verify` passes, and no record holds the token or the payload."""
    before = _head_seq(module_stack)
    started = time.monotonic()
    if module_stack.gateway is None:
        raise RuntimeError("no gateway")
    with module_stack.gateway.client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        codes = {
            http.post("/v1/tasks/test.touch", json={"note": PAYLOAD}).status_code
            for _ in range(FLOOD)
        }
    took = time.monotonic() - started
    assert codes == {401}
    assert took < 120, f"the flood took {took:.1f}s"

    # Every window the flood touched closes, then a summariser picks it up.
    wait_for(
        lambda: _total(_refusals(module_stack, before)) == FLOOD,
        timeout=WINDOW + 20,
        what="the summaries accounting for every refusal",
    )
    records = _refusals(module_stack, before)
    windows = int(took // WINDOW) + 2
    assert len(records) <= 2 * windows, (len(records), windows)
    assert {actor for _, actor, _ in records} == {"ip:127.0.0.1"}
    assert _head_seq(module_stack) - before <= 2 * windows

    with module_stack.redis_client() as client:
        stored = [str(v) for e in iter_records(client) for v in e.to_dict().values()]
    assert not [v for v in stored if TOKEN in v or PAYLOAD in v]  # no secret, no payload

    code, out = _cli(["audit", "verify"], module_stack.env)
    assert code == 0, out
    assert out.startswith("ok:")


def test_a_bad_credentials_flood_on_the_token_endpoint_is_aggregated(
    module_stack: PrivateStack,
) -> None:
    """300 token requests with made-up client ids: a few groups (made-up ids never make a
    group of their own), each at most two records per window, and the chain verifies."""
    before = _head_seq(module_stack)
    started = time.monotonic()
    if module_stack.gateway is None:
        raise RuntimeError("no gateway")
    with module_stack.gateway.client() as http:
        codes = {
            http.post(
                "/v1/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"made up {i}",
                    "client_secret": "wrong",
                },
            ).status_code
            for i in range(300)
        }
    took = time.monotonic() - started
    assert codes <= {401, 429}
    assert 429 in codes
    with module_stack.redis_client() as client:
        added = [e.record for e in iter_records(client) if e.seq > before]
    actors = {r.actor for r in added}
    assert actors == {"ip:127.0.0.1"}, actors
    groups = {(r.action, r.target) for r in added}
    windows = int(took // WINDOW) + 2
    assert len(added) <= 2 * len(groups) * windows, (len(added), groups, windows)
    code, out = _cli(["audit", "verify"], module_stack.env)
    assert code == 0, out
