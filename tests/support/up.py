"""Driving a ``taskgate up`` process from a test: wait for its ``stack.json``, stop it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["reap_up", "wait_stack_json"]


def reap_up(proc: subprocess.Popen[str]) -> None:
    """Stop `up` after a failed test the way Ctrl-C does, so it stops its children too
    (killed outright, it would leave Redis, the worker and the gateway running)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def wait_stack_json(
    proc: subprocess.Popen[str], state: Path, timeout: float = 90
) -> dict[str, object]:
    """The ``stack.json`` that `up` writes in ``state`` once the stack runs; fail the test
    with `up`'s output if it exits first, or after ``timeout``."""
    path = state / "stack.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"taskgate up exited early ({proc.returncode}):\n{out}")
        if path.exists() and path.stat().st_size > 0:
            return dict(json.loads(path.read_text()))
        time.sleep(0.3)
    proc.kill()
    pytest.fail("stack.json never appeared")
