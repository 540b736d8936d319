"""Task states: one vocabulary for the Python code, the Lua scripts, the API and the SDK."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from gateway.schemas import TaskStatus
from taskgate.client.models import FINAL_STATUSES
from workers.contract.states import FINISHED, UNKNOWN, TaskState

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "workers", "taskgate", "security")

# Every other lowercase word a Lua script quotes: hash fields, reply codes, Redis types and
# message fields. A state must never hide here; a new word is added here on purpose.
NOT_STATES = frozenset(
    {
        # task record and message fields
        "state", "owner", "attempts", "runs", "run_count", "started_at", "finished_at",
        "error", "requeues", "headers", "id", "properties", "delivery_info", "delivery_tag",
        "routing_key", "mac", "seq",
        # replies of the scripts, and Redis/Lua type names
        "missing", "running", "ok", "wait", "conflict", "fenced", "overflow",
        "table", "string", "list", "none",
    }
)  # fmt: skip
_WORD = re.compile(r"'([a-z][a-z_]*)'|\"([a-z][a-z_]*)\"")


def _lua_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.lua"))


def _lua_words(path: Path) -> set[str]:
    code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
    return {a or b for a, b in _WORD.findall(code)}


def test_the_scripts_are_found() -> None:
    """The scan reads the scripts that write and compare states (an empty scan proves
    nothing)."""
    names = {p.name for p in _lua_files()}
    assert {"revoke.lua", "lifecycle_gate.lua", "lifecycle_finish.lua", "sweep.lua"} <= names


@pytest.mark.parametrize("path", _lua_files(), ids=lambda p: p.name)
def test_every_word_a_lua_script_quotes_is_a_state_or_a_known_non_state(path: Path) -> None:
    """A Lua script's lowercase literals are task states or listed non-state words, so a
    misspelt state (``'canceled'``) cannot slip into a script."""
    strays = _lua_words(path) - set(TaskState) - NOT_STATES
    assert not strays, f"{path.name}: {sorted(strays)} is neither a TaskState nor listed"


def test_no_non_state_word_is_a_state() -> None:
    """The non-state list holds no state (else a state literal would pass unchecked)."""
    assert not NOT_STATES & set(TaskState)


def test_every_state_is_used_by_a_script_or_named_in_python() -> None:
    """No member is dead: each is quoted by a Lua script or named as ``TaskState.X``."""
    in_lua = set().union(*(_lua_words(p) for p in _lua_files())) & set(TaskState)
    python = "\n".join(
        p.read_text()
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if p.name != "states.py"
    )
    named = {s for s in TaskState if re.search(rf"\bTaskState\.{s.name}\b", python)}
    assert in_lua | named == set(TaskState)


def test_the_api_status_is_a_state_or_unknown() -> None:
    """The HTTP API's ``status`` enum is exactly the stored states plus ``unknown``."""
    assert set(get_args(TaskStatus)) == {*TaskState, UNKNOWN}
    assert UNKNOWN not in set(TaskState)


def test_the_sdk_final_statuses_are_the_finished_states() -> None:
    """The SDK (which imports nothing of the server) waits for exactly the final states."""
    assert FINAL_STATUSES == FINISHED


def test_a_state_is_its_stored_string() -> None:
    """A member is the stored string: equal, same hash, written as itself."""
    stored: str = "dead_lettered"  # as read back: any str, not a literal
    assert stored == TaskState.DEAD_LETTERED
    assert {"dead_lettered": 1}[TaskState.DEAD_LETTERED] == 1
    assert f"{TaskState.QUEUED}" == "queued"
    assert TaskState.QUEUED.encode() == b"queued"
