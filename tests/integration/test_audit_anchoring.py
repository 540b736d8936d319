"""Retention, anchoring and verification against a private stack (this module wipes it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certs.material import CertPaths
from security.audit import iter_records
from taskgate.cli.main import app
from tests.support.processes import wait_for
from tests.support.stacks import PrivateStack, stack_with_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
) -> Iterator[PrivateStack]:
    """A private stack anchoring every 5 records or second, with its own archive folder."""
    folder = tmp_path_factory.mktemp("audit-retention")
    timings = {
        "TASKGATE_AUDIT_ARCHIVE_DIR": str(folder / "archive"),
        "TASKGATE_AUDIT_ANCHOR_INTERVAL": "1",
        "TASKGATE_AUDIT_ANCHOR_EVERY": "5",
        "TASKGATE_AUDIT_VERIFY_LIMIT": "50",
        "TASKGATE_AUDIT_VERIFY_RATE_LIMIT": "8/minute",
    }
    with stack_with_gateway(
        folder / "stack",
        pki=pki,
        stack_env=stack_env,
        admin_token=admin_token,
        modules='["tests.integration.sample_tasks"]',
        timings=timings,
    ) as private:
        yield private


def _cli(stack: PrivateStack, *args: str) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    tg = {k: v for k, v in stack.env.items() if k.startswith("TASKGATE_")}
    result = CliRunner().invoke(app, list(args), env={**clean, **tg})
    return result.exit_code, result.output


def _anchors(stack: PrivateStack) -> list[dict[str, object]]:
    path = Path(stack.env["TASKGATE_AUDIT_ARCHIVE_DIR"]) / "checkpoints.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _head(stack: PrivateStack) -> int:
    with stack.redis_client() as client:
        raw = client.get("tg:audit:head")
    return int(raw.split()[0]) if raw else 0


def _activity(stack: PrivateStack, n: int) -> None:
    with stack.admin_http() as http:
        for _ in range(n):
            assert http.get("/v1/admin/stats").status_code == 200


def _anchored_at_head(stack: PrivateStack) -> int:
    head = _head(stack)
    seqs = [int(a["checkpoint"]["seq"]) for a in _anchors(stack)]  # type: ignore[index]
    return head if seqs and max(seqs) == head else 0


def test_the_gateway_anchors_the_head_outside_redis(stack: PrivateStack) -> None:
    """Within seconds of activity, a signed checkpoint of the head is in the anchor file."""
    _activity(stack, 12)
    seq = wait_for(lambda: _anchored_at_head(stack), timeout=20, what="an anchor at the head")
    assert seq >= 12
    code, out = _cli(stack, "audit", "verify", "--incremental")
    assert code == 0, out


def test_archive_then_verify_across_archive_and_live(stack: PrivateStack) -> None:
    """`audit archive` keeps 5 live records, writes the rest to a segment; verify passes
    with --archive and on the live log alone."""
    _activity(stack, 10)
    code, out = _cli(stack, "audit", "archive", "--retention", "5")
    assert code == 0, out
    assert "archived seq 1-" in out
    archive = Path(stack.env["TASKGATE_AUDIT_ARCHIVE_DIR"])
    segments = sorted(archive.glob("audit-*.jsonl"))
    assert len(segments) == 1
    with stack.redis_client() as client:
        live = list(iter_records(client))
    assert live[0].seq > 1
    assert len(live) <= 5 + 3  # kept 5, plus what arrived since (the archive record, ...)
    code, out = _cli(stack, "audit", "verify", "--archive", str(archive))
    assert code == 0, out
    assert "archived" in out
    code, out = _cli(stack, "audit", "verify")
    assert code == 0, out


def test_http_verify_is_bounded_and_resumes_with_a_cursor(stack: PrivateStack) -> None:
    """A limit of 3 stops early with a cursor; the next call goes on from it; no call checks
    more than TASKGATE_AUDIT_VERIFY_LIMIT entries."""
    _activity(stack, 6)
    with stack.admin_http() as http:
        first = http.get("/v1/admin/audit/verify", params={"from": "start", "limit": 3})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["ok"] is True
        assert body["complete"] is False
        assert body["count"] == 3
        second = http.get("/v1/admin/audit/verify", params={"after": body["next"]})
        assert second.status_code == 200
        assert second.json()["ok"] is True
        assert second.json()["first_seq"] == body["head_seq"] + 1
        _activity(stack, 60)
        capped = http.get("/v1/admin/audit/verify", params={"from": "start", "limit": 10**6})
        assert capped.json()["count"] == 50  # TASKGATE_AUDIT_VERIFY_LIMIT, whatever is asked
        assert capped.json()["complete"] is False


def test_a_cut_tail_with_a_rewound_head_fails_the_verify(stack: PrivateStack) -> None:
    """Records after an anchor are deleted and the head rewound: CLI and HTTP verify fail."""
    _activity(stack, 6)
    anchored = wait_for(lambda: _anchored_at_head(stack), timeout=20, what="an anchor")
    with stack.redis_client() as client:
        entries = list(iter_records(client))
        keep = [e for e in entries if e.seq < anchored - 2]
        client.xdel("tg:audit", *[e.stream_id for e in entries if e.seq >= anchored - 2])
        client.set("tg:audit:head", f"{keep[-1].seq} {keep[-1].mac}")
    code, out = _cli(stack, "audit", "verify")
    assert code == 1
    assert "truncated" in out
    assert f"-{anchored} are missing" in out
    with stack.admin_http() as http:
        body = http.get("/v1/admin/audit/verify").json()
    assert body["ok"] is False
    assert body["first_bad"]["reason"] in {"truncated", "checkpoint_mismatch"}


def test_flushall_fails_the_verify_naming_the_missing_range(stack: PrivateStack) -> None:
    """After FLUSHALL neither the CLI nor the HTTP verify says ok: records are missing."""
    newest = max(int(a["checkpoint"]["seq"]) for a in _anchors(stack))  # type: ignore[index]
    with stack.redis_client() as client:
        client.flushall()
    code, out = _cli(stack, "audit", "verify")
    assert code == 1
    assert "are missing" in out
    assert f"-{newest} are missing" in out
    with stack.admin_http() as http:
        body = http.get("/v1/admin/audit/verify").json()
    assert body["ok"] is False
    assert body["first_bad"]["reason"] == "truncated"


def test_http_verify_is_rate_limited(stack: PrivateStack) -> None:
    """Past TASKGATE_AUDIT_VERIFY_RATE_LIMIT calls a caller gets 429 with Retry-After."""
    with stack.admin_http() as http:
        codes = [
            http.get("/v1/admin/audit/verify", params={"limit": 1}).status_code for _ in range(9)
        ]
        last = http.get("/v1/admin/audit/verify", params={"limit": 1})
    assert 429 in codes
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) >= 1
