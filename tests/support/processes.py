"""A worker's environment, and waiting: for a started child, or for any condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskgate.devstack.procs import Child
from taskgate.devstack.role_dirs import role_dir

__all__ = ["for_worker", "wait_child", "wait_for"]


def for_worker(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a worker process: the worker's own folder as its state folder."""
    return env | {"TASKGATE_STATE_DIR": str(role_dir(Path(env["TASKGATE_STATE_DIR"]), "worker"))}


def wait_child(child: Child, check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it is truthy; fail the test with ``child``'s log tail if the child
    exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            pytest.fail(f"{child.name} exited while {what}:\n{child.log_tail()}", pytrace=False)
        if check():
            return
        time.sleep(0.2)
    pytest.fail(
        f"{child.name} was not ready after {timeout}s ({what}):\n{child.log_tail()}", pytrace=False
    )


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)
