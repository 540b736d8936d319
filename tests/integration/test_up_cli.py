"""With `taskgate up` running, the README's walkthrough (CLI and Python SDK) runs as printed
from the project folder, the operator commands find the stack by themselves, and the demo
client is one per state folder: reused by the next run, rotated by --reset-demo-client."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskgate.client import Client, Unauthorized
from taskgate.devstack.procs import taskgate_argv
from tests.support.up import reap_up, wait_stack_json

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def _env() -> dict[str, str]:
    """A user's shell: no TASKGATE_* settings; the venv's `taskgate` reachable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def _up(folder: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        taskgate_argv("up", "--port", "0", "--concurrency", "1", *extra),
        env=_env(),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    if proc.stdout is None:
        return ""
    with proc.stdout:
        return proc.stdout.read()


def _rerun(folder: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """Start `up` again and wait until it has rewritten the stack.json the last run left."""
    path = folder / ".taskgate" / "stack.json"
    before = path.stat().st_mtime_ns
    proc = _up(folder, *extra)
    deadline = time.monotonic() + 90
    while path.stat().st_mtime_ns == before:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "stack.json was never rewritten"
        time.sleep(0.3)
    return proc, wait_stack_json(proc, folder / ".taskgate")


def _cli(
    folder: Path, *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        taskgate_argv(*args),
        env=_env(),
        cwd=folder,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _progress_on_a_terminal(folder: Path, task_id: str) -> str:
    """`taskgate wait` with stderr on a pseudo-terminal: what it drew there."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            taskgate_argv("wait", task_id),
            env=_env(),
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while select.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    assert proc.returncode == 0, drawn
    text = drawn.decode(errors="replace")
    assert "\r" in text
    assert f"{task_id}: succeeded (attempt 1)" in text, text
    assert "\x1b[K" in text  # the line is cleared before the result is printed
    return text


def _walkthrough(lang: str) -> list[str]:
    section = README.read_text().split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.DOTALL)


def _demo(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / ".taskgate" / "stack.json").read_text())["demo_client"])


def test_readme_walkthrough_and_stack_discovery(tmp_path: Path) -> None:
    """The walkthrough's shell blocks and its Python example run as printed in the project
    folder; `clients`, `dlq`, `audit` and `tasks` find the stack with nothing exported."""
    # The project folder as `make` leaves it: `.venv` (here: the interpreter running us).
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    proc = _up(tmp_path)
    try:
        info = wait_stack_json(proc, tmp_path / ".taskgate")
        shell = subprocess.run(
            ["bash", "-e", "-c", "".join(_walkthrough("sh"))],
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert shell.returncode == 0, shell.stdout + shell.stderr
        assert shell.stdout.count("succeeded") >= 3, shell.stdout  # report, email, list
        assert "using the stack in" in shell.stderr
        assert list((tmp_path / ".taskgate" / "mail").glob("*.eml"))
        assert str(info["smtp"]["password"]) not in shell.stdout + shell.stderr  # type: ignore[index]
        (tmp_path / "report.py").write_text(_walkthrough("python")[0])
        python = subprocess.run(
            [sys.executable, "report.py"],
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert python.returncode == 0, python.stderr
        assert python.stdout.startswith("succeeded {"), python.stdout

        clients = _cli(tmp_path, "clients", "list", "--json")
        assert clients.returncode == 0, clients.stderr
        assert [c["client_id"] for c in json.loads(clients.stdout)] == [
            _demo(tmp_path)["client_id"]
        ]
        assert "using the stack in" in clients.stderr
        assert str(info["redis_url"]) in clients.stderr
        dlq = _cli(tmp_path, "dlq", "list", "--json")
        assert (dlq.returncode, json.loads(dlq.stdout)) == (0, []), dlq.stderr
        verified = _cli(Path("/"), "audit", "verify", "--state-dir", str(tmp_path / ".taskgate"))
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("ok:")
        listed = _cli(tmp_path, "tasks", "--json")
        statuses = {t["task"]: t["status"] for t in json.loads(listed.stdout)}
        assert statuses == {"report.generate": "succeeded", "email.send": "succeeded"}
        done_id = json.loads(listed.stdout)[0]["id"]
        assert _progress_on_a_terminal(tmp_path, done_id)
        piped = _cli(tmp_path, "wait", done_id)
        assert piped.returncode == 0, piped.stderr
        assert "\r" not in piped.stderr  # no progress line when stderr is not a terminal
        missing = _cli(tmp_path, "status", "00000000-0000-4000-8000-000000000000")
        assert missing.returncode == 1
        assert "404" in missing.stderr
        assert missing.stdout == ""
        canary = "canary-7f3a9c"
        token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub token's shape
        refused = [
            _cli(tmp_path, "submit", "report.generate", "--data", "@-", input_text=payload)
            for payload in (
                json.dumps({"title": canary, "columns": canary, "rows": [[canary]]}),
                json.dumps({"title": token, "columns": ["a"]}),  # the leak guard's refusal
            )
        ]
        for result in refused:
            assert result.returncode == 1, result.stderr
            assert "422" in result.stderr
            assert canary not in result.stdout + result.stderr
            assert token not in result.stdout + result.stderr
        assert "columns" in refused[0].stderr  # the field is named, never its value
        demo_secret = str(_demo(tmp_path)["client_secret"])
        for result in (shell, python, clients, dlq, verified, listed, missing, *refused):
            assert demo_secret not in result.stdout + result.stderr
        out = _stop(proc)
        assert demo_secret not in out
    finally:
        reap_up(proc)


def test_up_keeps_one_demo_client_and_reset_rotates_its_secret(tmp_path: Path) -> None:
    """A second run reuses the demo client (same id and secret, still the only client);
    --reset-demo-client keeps the id, gives a new secret, and the old one stops working."""
    proc = _up(tmp_path)
    try:
        wait_stack_json(proc, tmp_path / ".taskgate")
        first = _demo(tmp_path)
        out = _stop(proc)
        assert f"demo client {first['client_id']}: new" in out

        credential_file = tmp_path / ".taskgate" / "roles" / "operator" / "operator.credential"
        assert credential_file.stat().st_mode & 0o777 == 0o600
        credential = credential_file.read_text()

        proc, info = _rerun(tmp_path)
        second = _demo(tmp_path)
        assert second == first
        assert credential_file.read_text() == credential  # the CLI operator is reused too
        clients = _cli(tmp_path, "clients", "list", "--json")
        assert [c["client_id"] for c in json.loads(clients.stdout)] == [first["client_id"]]
        # the CLI acts as the stack's named operator: its reads and changes are audited so
        found = _cli(tmp_path, "audit", "search", "--actor", "local", "--json")
        assert found.returncode == 0, found.stderr
        actions = {json.loads(line)["action"] for line in found.stdout.splitlines()}
        assert "admin.clients.list" in actions
        assert credential.strip() not in found.stdout + found.stderr + clients.stderr
        out = _stop(proc)
        assert "reused from the last run" in out
        assert credential.strip() not in out

        proc, info = _rerun(tmp_path, "--reset-demo-client")
        third = _demo(tmp_path)
        assert third["client_id"] == first["client_id"]
        assert third["client_secret"] != first["client_secret"]
        assert (tmp_path / ".taskgate" / "stack.json").stat().st_mode & 0o777 == 0o600
        ca = str(info["ca_file"])
        old = Client(
            str(info["gateway_url"]), first["client_id"], first["client_secret"], ca_file=ca
        )
        with old, pytest.raises(Unauthorized):
            old.sign_in()
        with Client.from_stack(tmp_path / ".taskgate") as new:
            new.sign_in()
        out = _stop(proc)
        assert "new secret" in out
        assert str(third["client_secret"]) not in out
    finally:
        reap_up(proc)
