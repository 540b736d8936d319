"""The Python SDK (``taskgate.client``) against the real gateway over HTTPS and a real worker:
sign-in, submit, idempotent retry after a lost reply, wait, cancel, paging, each error type,
and no secret in any repr or message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certs.material import CertPaths, init_certs
from taskgate.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TaskgateClientError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from tests.support.gateways import ApiClient, Gateway, extra_gateway
from tests.support.tcp_proxy import DroppingProxy

pytestmark = pytest.mark.integration


def _sdk(client: ApiClient, url: str | None = None, **options: Any) -> Client:
    return Client(
        url or client.gateway.url,
        client.client_id,
        client.secret,
        ca_file=client.gateway.ca_file,
        **options,
    )


def _no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_sign_in_submit_wait_returns_the_result(make_client: Any) -> None:
    """The client signs in, submits, waits with backoff and gets the typed result."""
    api: ApiClient = make_client()
    with _sdk(api) as tg:
        accepted = tg.submit("test.touch", {"note": "hello", "token": "sdk-s3cret-value"})
        assert accepted.status == "queued"
        assert not accepted.replayed
        uuid.UUID(accepted.idempotency_key)  # one was generated
        polls: list[str] = []
        task = tg.wait(accepted.id, timeout=30, on_poll=lambda t: polls.append(t.status))
    assert task.status == "succeeded"
    assert task.finished
    assert task.task == "test.touch"
    assert task.error is None
    assert task.result["note_length"] == 5
    assert task.submitted_at is not None
    assert task.finished_at is not None
    assert polls[-1] == "succeeded"


def test_same_idempotency_key_returns_the_same_task(make_client: Any) -> None:
    """A given Idempotency-Key sent twice is one task; the second answer says replayed."""
    api: ApiClient = make_client()
    key = f"sdk-{uuid.uuid4()}"
    with _sdk(api) as tg:
        first = tg.submit("test.touch", {"note": "once"}, idempotency_key=key)
        second = tg.submit("test.touch", {"note": "once"}, idempotency_key=key)
    assert first.id == second.id
    assert second.replayed
    assert first.idempotency_key == second.idempotency_key == key


def test_lost_reply_is_retried_with_the_same_key_and_makes_one_task(
    make_client: Any, gateway_server: Gateway
) -> None:
    """The submission's reply is lost and its connection cut: the SDK sends it again with
    the same Idempotency-Key and gets the task the gateway had already accepted."""
    api: ApiClient = make_client()
    port = int(gateway_server.url.rsplit(":", 1)[1])
    with DroppingProxy(port) as proxy, _sdk(api, f"https://localhost:{proxy.port}") as tg:
        tg.sign_in()  # the connection is up and its handshake done: arm for a reply
        proxy.drop_next_reply()
        accepted = tg.submit("test.touch", {"note": "exactly once"})
        assert proxy.dropped == 1
        assert proxy.connections == 2  # the retry came on a new connection
        assert accepted.replayed  # the gateway had accepted the first one
        tasks = list(tg.tasks())
    assert [task.id for task in tasks] == [accepted.id]


def test_async_client_submits_waits_pages_and_reads_the_catalogue(make_client: Any) -> None:
    """AsyncClient: the same operations, awaited; tasks() pages through every task."""
    api: ApiClient = make_client()

    async def scenario() -> tuple[list[str], list[str], set[str], list[str]]:
        async with AsyncClient(
            api.gateway.url, api.client_id, api.secret, ca_file=api.gateway.ca_file
        ) as tg:
            accepted = [await tg.submit("test.touch", {"note": f"n{i}"}) for i in range(5)]
            done = [(await tg.wait(a.id, timeout=30)).status for a in accepted]
            listed = [task.id async for task in tg.tasks(page_size=2)]
            succeeded = {task.id async for task in tg.tasks(status="succeeded", page_size=2)}
            names = [entry.name for entry in await tg.catalog()]
            assert listed == [a.id for a in reversed(accepted)]  # newest first, all pages
            return done, listed, succeeded, names

    done, listed, succeeded, names = asyncio.run(scenario())
    assert done == ["succeeded"] * 5
    assert succeeded == set(listed)
    assert "test.touch" in names


def test_wait_times_out_then_cancel_revokes(make_client: Any) -> None:
    """A task no worker takes: wait() raises WaitTimeout with the last view; cancel()
    revokes it; a second cancel is a Conflict (it already finished)."""
    api: ApiClient = make_client()
    with _sdk(api) as tg:
        accepted = tg.submit("test.parked", {"note": "parked"})
        with pytest.raises(WaitTimeout) as waited:
            tg.wait(accepted.id, timeout=1)
        assert waited.value.task.status == "queued"
        assert tg.cancel(accepted.id).status == "revoked"
        assert tg.get(accepted.id).status == "revoked"
        with pytest.raises(Conflict) as again:
            tg.cancel(accepted.id)
    assert again.value.status == 409


def test_failed_task_error_is_an_object(make_client: Any) -> None:
    """A failed task's error has one shape: type, detail, attempt; the input is not in it."""
    api: ApiClient = make_client()
    with _sdk(api) as tg:
        task = tg.wait(tg.submit("test.fail_quoting_input", {"note": "canary-x1"}).id, timeout=30)
    assert task.status in {"failed", "dead_lettered"}
    assert task.error is not None
    assert task.error.type
    assert task.error.attempt is not None
    assert "canary-x1" not in repr(task)


def test_retried_then_succeeded_task_shows_no_error(make_client: Any) -> None:
    """An attempt failed, the retry succeeded: the task's view carries no error."""
    api: ApiClient = make_client()
    with _sdk(api) as tg:
        task = tg.wait(tg.submit("test.retry_quoting_input", {"note": "host"}).id, timeout=30)
    assert task.status == "succeeded"
    assert task.attempts >= 1
    assert task.error is None


def test_each_refusal_is_its_typed_error(make_client: Any) -> None:
    """401, 403, 404, 413 and 422 each raise their own type, with the problem's fields."""
    api: ApiClient = make_client()
    narrow: ApiClient = make_client("tasks:submit:test.touch")
    wrong = Client(api.gateway.url, api.client_id, "wrong-secret-1", ca_file=api.gateway.ca_file)
    with wrong, pytest.raises(Unauthorized) as unauthorized:
        wrong.sign_in()
    assert unauthorized.value.status == 401
    assert unauthorized.value.request_id
    with _sdk(narrow) as tg:
        with pytest.raises(Forbidden):
            tg.submit("test.other", {"note": "x"})
        accepted = tg.submit("test.touch", {"note": "x"})
        with pytest.raises(Forbidden):
            tg.get(accepted.id)  # no tasks:read
    with _sdk(api) as tg:
        with pytest.raises(NotFound):
            tg.get(str(uuid.uuid4()))
        with pytest.raises(NotFound):
            tg.get(accepted.id)  # another client's task looks missing
        with pytest.raises(ValidationFailed) as invalid:
            tg.submit("test.touch", {"nope": 1})
        with pytest.raises(PayloadTooLarge):
            tg.submit("test.touch", {"note": "x" * 200_000})
    assert set(invalid.value.fields) == {"note", "nope"}
    assert {e.kind for e in invalid.value.errors} == {"missing", "extra_forbidden"}


def test_rate_limited_carries_retry_after_and_is_not_waited_out(make_client: Any) -> None:
    """Over the client's limit: RateLimited with retry_after; a Retry-After longer than
    max_retry_wait is raised at once rather than slept through."""
    api: ApiClient = make_client(rate_limit="1/minute")
    with _sdk(api, max_retry_wait=1.0) as tg:
        tg.submit("test.touch", {"note": "first"})
        with pytest.raises(RateLimited) as limited:
            tg.submit("test.touch", {"note": "second"})
    assert limited.value.status == 429
    assert limited.value.retry_after is not None
    assert limited.value.retry_after > 1.0


@pytest.fixture
def full_gateway(stack_env: dict[str, str], session_dir: Any, pki: CertPaths) -> Iterator[Gateway]:
    """A second gateway on the session Redis that holds one queued task at most."""
    env = {**stack_env, "TASKGATE_MAX_QUEUED_GLOBAL": "1"}
    with extra_gateway("gateway-full", env, session_dir, pki) as gateway:
        yield gateway


def test_unavailable_when_the_queue_is_full(make_client: Any, full_gateway: Gateway) -> None:
    """503 (the gateway's queue is full) raises Unavailable with its Retry-After."""
    api: ApiClient = make_client()
    with _sdk(api, full_gateway.url, max_retry_wait=1.0) as tg:
        parked = tg.submit("test.parked", {"note": "holds the only place"})
        try:
            with pytest.raises(Unavailable) as unavailable:
                tg.submit("test.parked", {"note": "no room"})
        finally:
            tg.cancel(parked.id)
    assert unavailable.value.status == 503
    assert unavailable.value.retry_after == 10.0


def test_unreachable_gateway_is_connection_failed_after_retries(make_client: Any) -> None:
    """Nothing listens: ConnectionFailed after the bounded retries, naming no secret."""
    api: ApiClient = make_client()
    with DroppingProxy(1) as proxy:  # accepts, then cannot reach upstream port 1
        url = f"https://localhost:{proxy.port}"
    with pytest.raises(ConnectionFailed) as failed, _sdk(api, url, retries=1) as tg:
        tg.submit("test.touch", {"note": "x"})
    _no_secret(str(failed.value), api.secret)


def test_no_secret_in_reprs_or_messages(make_client: Any) -> None:
    """Canary: the client secret and the access token appear in no repr, str or message."""
    api: ApiClient = make_client()
    with _sdk(api) as tg:
        tg.sign_in()
        token = tg._flows._token.get_secret_value()  # type: ignore[union-attr]
        seen = [repr(tg), str(vars(tg)), repr(vars(tg._flows))]
        errors: list[TaskgateClientError] = []
        for call in (
            lambda: tg.get(str(uuid.uuid4())),
            lambda: tg.submit("test.touch", {"bad": api.secret}),
            lambda: tg.cancel(str(uuid.uuid4())),
        ):
            with pytest.raises(TaskgateClientError) as caught:
                call()
            errors.append(caught.value)
        seen += [repr(tg.get(tg.submit("test.touch", {"note": "x"}).id))]
    bad = Client(api.gateway.url, api.client_id, api.secret + "x", ca_file=api.gateway.ca_file)
    with bad, pytest.raises(Unauthorized) as refused:
        bad.sign_in()
    errors.append(refused.value)
    seen += [repr(bad)]
    for error in errors:
        seen += [str(error), repr(error), repr(error.args), repr(vars(error))]
    text = "\n".join(seen)
    _no_secret(text, api.secret, token)


def test_a_gateway_signed_by_another_ca_is_refused_at_once(
    make_client: Any, tmp_path: Path
) -> None:
    """The gateway's certificate does not verify against the CA given: ConnectionFailed
    naming the certificate, without retries."""
    init_certs(tmp_path / "other")
    api: ApiClient = make_client()
    other_ca = CertPaths(tmp_path / "other").ca
    with (
        Client(api.gateway.url, api.client_id, api.secret, ca_file=other_ca) as tg,
        pytest.raises(ConnectionFailed, match="certificate not trusted"),
    ):
        tg.sign_in()
