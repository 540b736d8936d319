"""The blocking client: drives the flows of :mod:`taskgate.client._flows` with httpx."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from taskgate.client._base import ClientBase
from taskgate.client._flows import Flow, Item, Reply, Send, Sleep
from taskgate.client.models import Accepted, CatalogEntry, Task, TaskPage

__all__ = ["Client"]

T = TypeVar("T")


class Client(ClientBase):
    """The taskgate API from blocking code. Use it as a context manager (or call
    :meth:`close`). Threads may share one client (httpx's client is thread-safe); threads
    that find no token at the same moment each sign in once.

    >>> with Client.from_stack() as tg:  # doctest: +SKIP
    ...     task = tg.wait(tg.submit("report.generate", payload).id, timeout=60)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(**self._http_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _perform(self, step: Send | Sleep | Item) -> Reply:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, Send):
            try:
                return self._http.send(step.request)
            except httpx.TransportError as exc:
                return exc
        return None

    def _run(self, flow: Flow[T]) -> T:
        reply: Reply = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            reply = self._perform(step)

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        reply: Reply = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if isinstance(step, Item):
                reply = None
                yield step.value
            else:
                reply = self._perform(step)

    def sign_in(self) -> None:
        """Fetch a token now (otherwise the first call does); raises if refused."""
        self._run(self._flows.sign_in(force=True))

    def submit(self, task: str, payload: Any, *, idempotency_key: str | None = None) -> Accepted:
        """Submit ``payload`` to ``task``; retried safely under one Idempotency-Key."""
        return self._run(self._flows.submit(task, payload, idempotency_key=idempotency_key))

    def get(self, task_id: str) -> Task:
        """The task's state, timings, and its result or error once finished."""
        return self._run(self._flows.get(task_id))

    def wait(
        self,
        task_id: str,
        timeout: float = 60.0,
        *,
        on_poll: Callable[[Task], None] | None = None,
    ) -> Task:
        """Poll with backoff until the task is final; :class:`WaitTimeout` after ``timeout``."""
        return self._run(self._flows.wait(task_id, timeout, on_poll=on_poll))

    def cancel(self, task_id: str) -> Task:
        """Cancel the task; its status after (``revoked`` or ``cancelling``)."""
        return self._run(self._flows.cancel(task_id))

    def page(
        self, *, status: str | None = None, before: float | None = None, limit: int = 200
    ) -> TaskPage:
        """One page of the caller's tasks (``next`` is the following page's cursor)."""
        return self._run(self._flows.page(status=status, before=before, limit=limit))

    def tasks(self, *, status: str | None = None, page_size: int = 200) -> Iterator[Task]:
        """Every task of the caller, newest first, fetching page after page."""
        return self._iterate(self._flows.tasks(status=status, page_size=page_size))

    def catalog(self) -> list[CatalogEntry]:
        """The tasks this client may submit, with their JSON Schemas and limits."""
        return self._run(self._flows.catalog())
