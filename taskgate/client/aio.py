"""The asyncio client: drives the flows of :mod:`taskgate.client._flows` with httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from taskgate.client._base import ClientBase
from taskgate.client._flows import Flow, Item, Reply, Send, Sleep
from taskgate.client.models import Accepted, CatalogEntry, Task, TaskPage

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(ClientBase):
    """The taskgate API from asyncio code; the same methods as
    :class:`~taskgate.client.Client`, awaited (``tasks()`` is an async iterator)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(**self._http_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _perform(self, step: Send | Sleep | Item) -> Reply:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, Send):
            try:
                return await self._http.send(step.request)
            except httpx.TransportError as exc:
                return exc
        return None

    async def _run(self, flow: Flow[T]) -> T:
        reply: Reply = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            reply = await self._perform(step)

    async def _iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
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
                reply = await self._perform(step)

    async def sign_in(self) -> None:
        """Fetch a token now (otherwise the first call does); raises if refused."""
        await self._run(self._flows.sign_in(force=True))

    async def submit(
        self, task: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Accepted:
        """Submit ``payload`` to ``task``; retried safely under one Idempotency-Key."""
        return await self._run(self._flows.submit(task, payload, idempotency_key=idempotency_key))

    async def get(self, task_id: str) -> Task:
        """The task's state, timings, and its result or error once finished."""
        return await self._run(self._flows.get(task_id))

    async def wait(
        self,
        task_id: str,
        timeout: float = 60.0,
        *,
        on_poll: Callable[[Task], None] | None = None,
    ) -> Task:
        """Poll with backoff until the task is final; :class:`WaitTimeout` after ``timeout``."""
        return await self._run(self._flows.wait(task_id, timeout, on_poll=on_poll))

    async def cancel(self, task_id: str) -> Task:
        """Cancel the task; its status after (``revoked`` or ``cancelling``)."""
        return await self._run(self._flows.cancel(task_id))

    async def page(
        self, *, status: str | None = None, before: float | None = None, limit: int = 200
    ) -> TaskPage:
        """One page of the caller's tasks (``next`` is the following page's cursor)."""
        return await self._run(self._flows.page(status=status, before=before, limit=limit))

    def tasks(self, *, status: str | None = None, page_size: int = 200) -> AsyncIterator[Task]:
        """Every task of the caller, newest first, fetching page after page."""
        return self._iterate(self._flows.tasks(status=status, page_size=page_size))

    async def catalog(self) -> list[CatalogEntry]:
        """The tasks this client may submit, with their JSON Schemas and limits."""
        return await self._run(self._flows.catalog())
