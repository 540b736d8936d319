"""The SDK's logic, once, for both clients: each operation is a generator ("flow").

A flow yields :class:`Send` (an HTTP request to make), :class:`Sleep` (a pause) or
:class:`Item` (a value for an iterating caller) and receives, after a ``Send``, the
``httpx.Response`` or the ``httpx.TransportError`` it ended in. :class:`~taskgate.client.Client`
and :class:`~taskgate.client.AsyncClient` only drive flows - one with blocking calls, the
other awaiting - so sign-in, token refresh, retries, ``Retry-After``, polling and paging
behave the same in both.
"""

from __future__ import annotations

import email.utils
import json
import random
import ssl
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from taskgate.client.errors import ApiError, ConnectionFailed, WaitTimeout, error_from_problem
from taskgate.client.models import Accepted, CatalogEntry, Task, TaskPage

__all__ = ["Flow", "Flows", "Item", "Send", "Sleep"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Item:
    value: Any


Reply = httpx.Response | httpx.TransportError | None
Flow = Generator[Send | Sleep | Item, Reply, T]

# Statuses worth the same request again: over a limit, failing closed, or (for a submission)
# the same Idempotency-Key still being processed after a dropped connection.
_RETRY_STATUSES = frozenset({429, 503})
_SUBMIT_RETRY_STATUSES = _RETRY_STATUSES | {409}


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None if absent or bad."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _untrusted(error: BaseException) -> bool:
    """Whether ``error`` comes from a failed certificate check (not worth retrying)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def raise_for(response: httpx.Response) -> None:
    """The typed error of a refusal (problem+json) - nothing for a 2xx."""
    if response.is_success:
        return
    raise error_from_problem(
        response.status_code,
        _json(response),
        retry_after=_retry_after(response),
        reason=response.reason_phrase,
    )


class Flows:
    """Sign-in, token cache and every API operation, as flows (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        *,
        scope: str | None = None,
        retries: int = 4,
        max_retry_wait: float = 30.0,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retries < 0 or max_retry_wait < 0:
            raise ValueError("retries and max_retry_wait must not be negative")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = (
            client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        )
        self.scope = scope
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._token: SecretStr | None = None
        self._refresh_at = 0.0

    def _url(self, path: str) -> str:
        return self.base_url + path

    # --- retries and sign-in ---------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_retry_wait, 0.25 * 2**attempt * (1 + random.random())))  # noqa: S311 - jitter

    def _send(
        self,
        build: Callable[[], httpx.Request],
        *,
        retry_transport: bool,
        statuses: frozenset[int] = _RETRY_STATUSES,
    ) -> Flow[httpx.Response]:
        """Send ``build()``; on a dropped connection (if ``retry_transport``) or one of
        ``statuses``, wait (``Retry-After`` when given) and send it again, ``retries`` times
        at most. A ``Retry-After`` longer than ``max_retry_wait`` is not waited out."""
        for attempt in range(self.retries + 1):
            request = build()
            reply = yield Send(request)
            last = attempt == self.retries
            if isinstance(reply, httpx.TransportError):
                if _untrusted(reply):  # the same certificate fails the same way again
                    raise ConnectionFailed(self.base_url, "certificate not trusted") from None
                if not retry_transport or last:
                    raise ConnectionFailed(self.base_url, type(reply).__name__) from None
                delay = self._backoff(attempt)
            elif reply is None:  # pragma: no cover - a driver always answers a Send
                raise RuntimeError("no reply to a request")
            elif reply.status_code in statuses and not last:
                after = _retry_after(reply)
                if after is not None and after > self.max_retry_wait:
                    return reply
                delay = after if after is not None else self._backoff(attempt)
            else:
                return reply
            yield Sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def sign_in(self, *, force: bool = False) -> Flow[str]:
        """A valid access token: the cached one until ``refresh_margin`` s before it expires."""
        if not force and self._token is not None and self._clock() < self._refresh_at:
            return self._token.get_secret_value()
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret.get_secret_value(),
        }
        if self.scope:
            form["scope"] = self.scope
        started = self._clock()
        response = yield from self._send(
            lambda: httpx.Request("POST", self._url("/v1/token"), data=form),
            retry_transport=True,
        )
        raise_for(response)
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ApiError(response.status_code, "Bad token response", "no access_token")
        lifetime = float(body.get("expires_in") or 60)
        self._token = SecretStr(body["access_token"])
        self._refresh_at = started + max(lifetime - self.refresh_margin, lifetime / 2)
        return self._token.get_secret_value()

    def _authorized(
        self,
        method: str,
        path: str,
        *,
        retry_transport: bool = True,
        statuses: frozenset[int] = _RETRY_STATUSES,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Flow[httpx.Response]:
        """A request with the bearer token; a 401 gets one fresh sign-in and one retry
        (the token may have been revoked or expired early)."""
        for fresh in (False, True):
            token = yield from self.sign_in(force=fresh)

            def build(token: str = token) -> httpx.Request:
                auth = {"Authorization": f"Bearer {token}", **(headers or {})}
                return httpx.Request(method, self._url(path), headers=auth, **kwargs)

            response = yield from self._send(
                build, retry_transport=retry_transport, statuses=statuses
            )
            if response.status_code != 401 or fresh:
                return response
            self._token = None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- operations -------------------------------------------------------------------

    def submit(
        self, task: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Flow[Accepted]:
        """``POST /v1/tasks/{task}`` with an Idempotency-Key (a new UUID unless given), so
        that every retry - after a dropped connection, a 429 or a 503 - is the same
        submission: the gateway answers a repeat with the task it already accepted."""
        key = idempotency_key or str(uuid.uuid4())
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        response = yield from self._authorized(
            "POST",
            f"/v1/tasks/{quote(task, safe='')}",
            statuses=_SUBMIT_RETRY_STATUSES,
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            content=body,
        )
        raise_for(response)
        replayed = response.headers.get("idempotent-replayed") == "true"
        return Accepted.from_json(response.json(), key=key, replayed=replayed)

    def get(self, task_id: str) -> Flow[Task]:
        """``GET /v1/tasks/{id}``: state, timings, and the result or error once finished."""
        response = yield from self._authorized("GET", f"/v1/tasks/{quote(task_id, safe='')}")
        raise_for(response)
        return Task.from_json(response.json())

    def wait(
        self,
        task_id: str,
        timeout: float,
        *,
        poll: float = 0.25,
        max_poll: float = 2.0,
        on_poll: Callable[[Task], None] | None = None,
    ) -> Flow[Task]:
        """Poll until the task is final: first after ``poll`` s, then 1.6 times longer each
        time up to ``max_poll``; :class:`WaitTimeout` after ``timeout`` s."""
        deadline = self._clock() + timeout
        delay = poll
        while True:
            task = yield from self.get(task_id)
            if on_poll is not None:
                on_poll(task)
            if task.finished:
                return task
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise WaitTimeout(task, timeout)
            yield Sleep(min(delay, remaining))
            delay = min(delay * 1.6, max_poll)

    def cancel(self, task_id: str) -> Flow[Task]:
        """``DELETE /v1/tasks/{id}``: the task's status after it (``revoked`` or
        ``cancelling``); :class:`~taskgate.client.Conflict` if it cannot be cancelled."""
        response = yield from self._authorized("DELETE", f"/v1/tasks/{quote(task_id, safe='')}")
        raise_for(response)
        body = response.json()
        return Task(id=str(body["id"]), task=None, status=str(body["status"]))

    def page(
        self, *, status: str | None = None, before: float | None = None, limit: int = 200
    ) -> Flow[TaskPage]:
        """One page of the caller's tasks, newest first."""
        params: dict[str, str | int | float] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if before is not None:
            params["before"] = before
        response = yield from self._authorized("GET", "/v1/tasks", params=params)
        raise_for(response)
        return TaskPage.from_json(response.json())

    def tasks(self, *, status: str | None = None, page_size: int = 200) -> Flow[None]:
        """Every task of the caller (``status``: only those in it), page after page."""
        before: float | None = None
        while True:
            page = yield from self.page(status=status, before=before, limit=page_size)
            for task in page.items:
                yield Item(task)
            if page.next is None:
                return
            before = page.next

    def catalog(self) -> Flow[list[CatalogEntry]]:
        """``GET /v1/tasks/catalog``: the tasks this client may submit."""
        response = yield from self._authorized("GET", "/v1/tasks/catalog")
        raise_for(response)
        return [CatalogEntry.from_json(item) for item in response.json().get("tasks", [])]
