"""A worker runtime's Redis client belongs to the process that made it: a forked pool
process makes its own, and shares the audit head slot made before the fork."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from security.audit.chain import Head
from security.keystore import init_keys, load_keys
from workers.contract.catalogue import Catalogue
from workers.execution.runtime import WorkerRuntime


class _Client:
    """Stands in for redis.Redis: the runtime only registers scripts on creation."""

    def register_script(self, script: str) -> Any:
        return script


class _TLS:
    """Stands in for RedisTLS: counts the clients made."""

    def __init__(self) -> None:
        self.made = 0

    def client(self, **_options: Any) -> _Client:
        self.made += 1
        return _Client()


def _runtime(tmp_path: Path, tls: _TLS) -> WorkerRuntime:
    init_keys(tmp_path / "keys")
    keys = load_keys(tmp_path / "keys", role="worker")
    return WorkerRuntime(keys=keys, redis_tls=tls, catalogue=Catalogue())  # type: ignore[arg-type]


def test_a_process_keeps_its_client(tmp_path: Path) -> None:
    tls = _TLS()
    runtime = _runtime(tmp_path, tls)
    assert runtime.client() is runtime.client()
    assert tls.made == 1


def test_a_forked_process_makes_its_own_client_and_shares_the_head_slot(tmp_path: Path) -> None:
    tls = _TLS()
    runtime = _runtime(tmp_path, tls)
    parent = runtime.client()
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if it made a new client
        own = runtime.client() is not parent and tls.made == 2
        runtime._head_slot.announce(Head(3, "ab" * 32))
        os._exit(0 if own else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert runtime.client() is parent  # the parent's own, still
    assert runtime._head_slot.read() == Head(3, "ab" * 32)
