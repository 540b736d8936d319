"""The CLI finds the stack from stack.json, says which, and leaves explicit settings alone;
every command's --help lists the exit codes; tables and JSON print as documented."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from taskgate.cli.main import app
from taskgate.cli.output import echo_table
from taskgate.cli.stack_discovery import use_stack_for_redis
from taskgate.client import StackFileError, StackInfo, find_state_dir

SECRET = "tgs_demo-secret-canary-0000000000000000"


@pytest.fixture(autouse=True)
def _environment() -> Iterator[None]:
    """Discovery writes os.environ (the CLI's own process): restore it after each test."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stack_json(folder: Path, **changes: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "gateway_url": "https://localhost:8443",
        "redis_url": "rediss://localhost:6390/0",
        "ca_file": str(folder / "certs" / "ca.pem"),
        "state_dir": str(folder),
        "roles": {"operator": str(folder / "roles" / "operator")},
        "demo_client": {"client_id": "demo-1a2b3c4d", "client_secret": SECRET},
        "pids": {"up": 2**22 + 12345},  # no such process
        **changes,
    }
    path = folder / "stack.json"
    path.write_text(json.dumps(doc))
    return path


def test_state_dir_is_explicit_then_env_then_dot_taskgate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--state-dir wins over TASKGATE_STATE_DIR, which wins over ./.taskgate."""
    monkeypatch.delenv("TASKGATE_STATE_DIR", raising=False)
    assert find_state_dir(None) == Path(".taskgate")
    monkeypatch.setenv("TASKGATE_STATE_DIR", str(tmp_path))
    assert find_state_dir(None) == tmp_path
    assert find_state_dir(tmp_path / "x") == tmp_path / "x"


def test_stack_info_hides_the_demo_secret_and_refuses_broken_files(tmp_path: Path) -> None:
    """The demo secret is in no repr; a missing or malformed stack.json is StackFileError."""
    _stack_json(tmp_path / "ok")
    info = StackInfo.load(tmp_path / "ok")
    assert info.demo_client_secret is not None
    assert info.demo_client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(info)
    assert not info.running
    with pytest.raises(StackFileError, match="taskgate up"):
        StackInfo.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "stack.json").write_text("{not json")
    with pytest.raises(StackFileError):
        StackInfo.load(tmp_path / "bad")
    _stack_json(tmp_path / "partial", gateway_url=None)
    (tmp_path / "partial" / "stack.json").write_text(json.dumps({"redis_url": "x"}))
    with pytest.raises(StackFileError, match="lacks"):
        StackInfo.load(tmp_path / "partial")


def test_redis_commands_take_the_stacks_redis_and_say_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No TASKGATE_REDIS_URL: the stack's URL and state folder are used, named on stderr,
    with a note that its `taskgate up` is gone."""
    _stack_json(tmp_path)
    monkeypatch.delenv("TASKGATE_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKGATE_CA_FILE", "/elsewhere/ca.pem")
    assert use_stack_for_redis(tmp_path) is not None
    assert os.environ["TASKGATE_REDIS_URL"] == "rediss://localhost:6390/0"
    assert os.environ["TASKGATE_STATE_DIR"] == str(tmp_path.resolve())
    assert "TASKGATE_CA_FILE" not in os.environ
    err = capsys.readouterr().err
    assert f"using the stack in {tmp_path.resolve()}" in err
    assert "not running" in err
    assert SECRET not in err


def test_an_explicit_redis_url_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TASKGATE_REDIS_URL set and no --state-dir: nothing read, changed or printed."""
    monkeypatch.chdir(tmp_path)
    _stack_json(tmp_path / ".taskgate")
    monkeypatch.setenv("TASKGATE_REDIS_URL", "rediss://redis.internal:6380/0")
    monkeypatch.delenv("TASKGATE_STATE_DIR", raising=False)
    assert use_stack_for_redis(None) is None
    assert os.environ["TASKGATE_REDIS_URL"] == "rediss://redis.internal:6380/0"
    assert "TASKGATE_STATE_DIR" not in os.environ
    assert capsys.readouterr().err == ""


def test_an_asked_for_state_dir_without_stack_json_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state-dir naming a folder with no stack.json: a message, no setting changed."""
    monkeypatch.delenv("TASKGATE_REDIS_URL", raising=False)
    assert use_stack_for_redis(tmp_path) is None
    assert "TASKGATE_REDIS_URL" not in os.environ
    assert "stack.json" in capsys.readouterr().err


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_help_lists_the_exit_codes_and_redis_commands_take_state_dir() -> None:
    """`--help` of every command and group ends with its exit codes; clients, dlq and
    audit commands accept --state-dir."""
    root = typer.main.get_command(app)
    runner = CliRunner()
    paths = _commands(root)
    assert ("submit",) in paths
    assert ("dlq", "list") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "Exit codes: 0" in result.output, path
        if path[:1] in {("clients",), ("dlq",), ("audit",)} and len(path) == 2:
            assert "--state-dir" in result.output, path


def test_tables_pad_columns_and_say_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    """A header, padded cells, '-' for missing values; the empty message otherwise."""
    echo_table([{"id": "a", "n": 1}, {"id": "bbb"}], ["id", "n"], empty="none")
    assert capsys.readouterr().out.splitlines() == ["id   n", "a    1", "bbb  -"]
    echo_table([], ["id"], empty="none")
    assert capsys.readouterr().out == "none\n"
