"""What the worker's channel puts back when it closes (a lost broker connection, a
shutdown): every delivery except those whose runs are already in a pool process."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from celery.worker import state as worker_state

from workers.celery_ext.transport import QoS


class _Channel:
    """Stands in for kombu's Redis channel: the QoS only borrows a client from it here."""

    do_restore = False  # what kombu's own restore at garbage collection asks

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or "client"


class _Message:
    def __init__(self, tag: str) -> None:
        self.delivery_tag = tag


class _Request:
    """Stands in for Celery's Request: its message, and whether it went to the pool."""

    def __init__(self, tag: str, *, handed_over: bool) -> None:
        self.message = _Message(tag)
        self._apply_result = (lambda: None) if handed_over else None


def _qos(tags: list[str]) -> tuple[QoS, list[str]]:
    qos = QoS(_Channel())
    delivered: Any = qos._delivered
    for tag in tags:
        delivered[tag] = _Message(tag)
        qos._tokens[tag] = f"token-{tag}"
    restored: list[str] = []

    def restore_by_tag(tag: Any, client: Any = None, leftmost: bool = False) -> None:
        restored.append(tag)
        qos._tokens.pop(tag, None)

    qos.restore_by_tag = restore_by_tag  # type: ignore[method-assign]
    return qos, restored


class _Worker:
    """The worker's request sets (fresh for the test, not Celery's own), with the strong
    references the weak sets need."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kept: list[_Request] = []
        self.reserved: weakref.WeakSet[_Request] = weakref.WeakSet()
        self.active: weakref.WeakSet[_Request] = weakref.WeakSet()
        monkeypatch.setattr(worker_state, "reserved_requests", self.reserved)
        monkeypatch.setattr(worker_state, "active_requests", self.active)

    def reserve(self, tag: str, *, handed_over: bool, active: bool = False) -> None:
        request = _Request(tag, handed_over=handed_over)
        self.kept.append(request)
        (self.active if active else self.reserved).add(request)


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> _Worker:
    return _Worker(monkeypatch)


def test_a_delivery_whose_run_is_in_the_pool_is_left_held_the_others_go_back(
    worker: _Worker,
) -> None:
    worker.reserve("running", handed_over=True)
    worker.reserve("waiting", handed_over=False)
    qos, restored = _qos(["running", "waiting", "no-request"])

    qos.restore_unacked()

    assert restored == ["waiting", "no-request"]
    assert qos.token_for("running") == "token-running"  # still renewed by the heartbeat
    assert not qos._delivered


def test_an_active_request_counts_as_in_the_pool(worker: _Worker) -> None:
    worker.reserve("active", handed_over=True, active=True)
    qos, restored = _qos(["active", "other"])

    qos.restore_unacked()

    assert restored == ["other"]


def test_with_nothing_in_the_pool_every_delivery_goes_back(worker: _Worker) -> None:
    qos, restored = _qos(["a", "b"])

    qos.restore_unacked()

    assert restored == ["a", "b"]
    assert qos.token_for("a") is None
