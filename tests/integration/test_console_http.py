"""The web console over HTTPS, without a browser: sessions, CSRF, roles, CSP, canaries."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from contextlib import closing
from typing import Any

import pytest
import redis

from gateway.stores.operators import OperatorRegistry
from security.audit import iter_records
from security.keystore import KeyRing
from taskgate.devstack.redis_server import RedisServer
from tests.support.console import IDLE_TIMEOUT, csrf_of, sign_in
from tests.support.gateways import ApiClient, Gateway
from tests.support.processes import wait_for
from tests.support.replies import as_text
from workers.contract.states import TaskState

pytestmark = pytest.mark.integration

PAGES = (
    "/console/overview",
    "/console/tasks",
    "/console/dead-letters",
    "/console/clients",
    "/console/keys",
    "/console/audit",
    "/console/audit/export",
)
_TASK = "0f0e0d0c-0b0a-4000-8000-000000000001"


def _forms(client_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every state-changing console form (bar sign-out), with plausible fields."""
    return [
        (f"/console/tasks/{_TASK}/cancel", {}),
        (f"/console/tasks/{_TASK}/retry", {}),
        (f"/console/dead-letters/{_TASK}/requeue", {}),
        (f"/console/dead-letters/{_TASK}/purge", {}),
        ("/console/dead-letters/group", {"task": "t", "op": "purge", "confirm": "yes"}),
        ("/console/clients", {"name": "x", "scope": "tasks:read"}),
        (f"/console/clients/{client_id}/disable", {}),
        (f"/console/clients/{client_id}/enable", {}),
        (f"/console/clients/{client_id}/rotate-secret", {}),
        (f"/console/clients/{client_id}/edit", {"scopes": "audit:read", "max_queued": "1"}),
    ]  # fmt: skip


def _audited(client: redis.Redis, action: str) -> list[tuple[str, str, str]]:
    return [
        (e.record.actor, e.record.outcome, e.record.target)
        for e in iter_records(client)
        if e.record.action == action
    ]


def test_console_is_off_unless_enabled(gateway_server: Gateway) -> None:
    """The shared gateway runs without TASKGATE_CONSOLE: /console does not exist."""
    with gateway_server.client() as http:
        assert http.get("/console/login").status_code == 404
        assert http.get("/console/static/console.css").status_code == 404


def test_every_page_renders_with_the_csp_and_the_cookie_flags(
    console_gateway: Gateway, admin_token: str
) -> None:
    """Sign-in sets a __Host- cookie (HttpOnly, Secure, SameSite=Strict, Path=/); every page
    carries a CSP with no inline script or style and no third-party source."""
    with console_gateway.client() as http:
        form = http.get("/console/login")
        login_cookie = form.headers["set-cookie"]
        done = http.post(
            "/console/login", data={"csrf": csrf_of(form.text), "credential": admin_token}
        )
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        for flags in (login_cookie, cookie):
            low = flags.lower()
            assert "httponly" in low
            assert "secure" in low
            assert "samesite=strict" in low
            assert "path=/" in low
            assert "domain=" not in low
        assert cookie.startswith("__Host-taskgate-console=")
        for path in PAGES:
            response = http.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp
            assert "unsafe-inline" not in csp
            assert "script-src" not in csp  # no script at all: default-src 'none' applies
            assert response.headers["cache-control"] == "no-store"
            assert "<script" not in response.text
            assert "style=" not in response.text
        css = http.get("/console/static/console.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")


def test_a_client_token_or_secret_never_opens_the_console(
    console_gateway: Gateway, make_client: Any
) -> None:
    """A client's bearer token is ignored by the console; neither it nor the client's
    secret signs in."""
    client: ApiClient = make_client("tasks:read audit:read")
    token = client.token()
    with console_gateway.client(headers={"Authorization": f"Bearer {token}"}) as http:
        page = http.get("/console/overview")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login"
        for credential in (token, client.secret, f"{client.client_id}:{client.secret}"):
            form = http.get("/console/login")
            refused = http.post(
                "/console/login", data={"csrf": csrf_of(form.text), "credential": credential}
            )
            assert refused.status_code == 401
            assert "__Host-taskgate-console" not in refused.headers.get("set-cookie", "")
            assert credential not in refused.text


def test_sign_in_refuses_a_missing_csrf_token(console_gateway: Gateway, admin_token: str) -> None:
    """The sign-in form must repeat its cookie's token (login CSRF)."""
    with console_gateway.client() as http:
        http.get("/console/login")
        refused = http.post("/console/login", data={"credential": admin_token})
    assert refused.status_code == 403
    assert "__Host-taskgate-console" not in refused.headers.get("set-cookie", "")


def test_a_form_without_the_csrf_token_is_refused_and_audited(
    console_gateway: Gateway, admin_token: str, make_client: Any, redis_client: redis.Redis
) -> None:
    """A state-changing post with no token, a wrong token or a foreign Origin: 403, nothing
    changes, the refusal is audited under the operator."""
    target: ApiClient = make_client("tasks:read")
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):
        path = f"/console/clients/{target.client_id}/disable"
        assert http.post(path).status_code == 403
        assert http.post(path, data={"csrf": csrf[:-2] + "xx"}).status_code == 403
        foreign = http.post(path, data={"csrf": csrf}, headers={"Origin": "https://evil.test"})
        assert foreign.status_code == 403
        assert target.token()  # still enabled: nothing happened
        assert len([r for r in _audited(redis_client, "console.csrf") if r[0] == "admin"]) == 3
        done = http.post(path, data={"csrf": csrf})
        assert done.status_code == 303
    assert ("admin", "ok", target.client_id) in _audited(redis_client, "admin.clients.disable")


def test_an_auditor_reads_every_page_but_changes_nothing(
    console_gateway: Gateway, make_operator: Any, make_client: Any, redis_client: redis.Redis
) -> None:
    """Every form is 403 for an auditor (with a valid CSRF token), each refusal audited
    under its name; the pages render without action buttons."""
    name, credential = make_operator("auditor")
    target: ApiClient = make_client("tasks:read")
    http, csrf = sign_in(console_gateway, credential)
    with closing(http):
        for path in PAGES:
            assert http.get(path).status_code == 200, path
        assert "create-client" not in http.get("/console/clients").text
        forms = _forms(target.client_id)
        for path, fields in forms:
            response = http.post(path, data={"csrf": csrf, **fields})
            assert response.status_code == 403, (path, response.text[:200])
    refused = [r for r in _audited(redis_client, "operator.forbidden") if r[0] == name]
    assert sorted(r[2] for r in refused) == sorted(f"POST {p}" for p, _ in forms)
    assert target.token()  # not disabled, not rotated


def test_signing_out_ends_the_session(console_gateway: Gateway, admin_token: str) -> None:
    """After sign-out the old cookie opens nothing, even replayed."""
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):
        cookie = http.cookies.get("__Host-taskgate-console")
        out = http.post("/console/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert out.headers["location"].startswith("/console/login")
    with console_gateway.client(cookies={"__Host-taskgate-console": cookie or ""}) as replay:
        assert replay.get("/console/overview").status_code == 303


def test_an_idle_session_expires_and_its_forms_are_refused(
    console_gateway: Gateway, admin_token: str, make_client: Any
) -> None:
    """Past the idle timeout the session is gone: pages and forms go to sign-in."""
    target: ApiClient = make_client("tasks:read")
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):

        def expired() -> bool:
            return http.get("/console/keys").status_code == 303

        time.sleep(IDLE_TIMEOUT)
        wait_for(expired, timeout=IDLE_TIMEOUT * 3, what="the idle session expiring", interval=1)
        late = http.post(f"/console/clients/{target.client_id}/disable", data={"csrf": csrf})
        assert late.status_code == 303
        assert late.headers["location"] == "/console/login"
    assert target.token()  # the late form changed nothing


def test_a_revoked_or_tampered_operator_loses_its_session(
    console_gateway: Gateway,
    make_operator: Any,
    redis_client: redis.Redis,
    tls_redis: RedisServer,
    keyring: KeyRing,
) -> None:
    """A session re-checks its operator on every request: a revocation ends it at once, and
    so does a record someone changed without the state key."""
    name, credential = make_operator("admin")
    http, _ = sign_in(console_gateway, credential)
    with closing(http):

        async def revoke() -> None:
            client = tls_redis.tls.async_client()
            try:
                await OperatorRegistry(client, keyring.state).revoke(name)
            finally:
                await client.aclose()

        asyncio.run(revoke())
        assert http.get("/console/overview").status_code == 303
    other, credential = make_operator("auditor")
    http, _ = sign_in(console_gateway, credential)
    with closing(http):
        redis_client.hset(f"tg:operator:{other}", "role", "admin")  # no state key: bad MAC
        assert http.get("/console/overview").status_code == 303


def _fail_with_canaries(client: ApiClient, payload: str, secret: str) -> str:
    """One task carrying both canaries (the secret in its declared secret field), and one
    whose error message quotes the payload canary and is dead-lettered; the latter's id."""
    with client.http() as http:
        kept = http.post("/v1/tasks/test.touch", json={"note": payload, "token": secret})
        failed = http.post("/v1/tasks/test.fail_quoting_input", json={"note": payload})
    assert kept.status_code == failed.status_code == 202, (kept.text, failed.text)
    return str(failed.json()["id"])


def test_canary_payload_and_secret_appear_on_no_page_and_in_no_export(
    console_gateway: Gateway, admin_token: str, make_client: Any, redis_client: redis.Redis
) -> None:
    """A dead-lettered task whose error quotes its input: the task page, the dead letters,
    the audit view and export, every page, hold neither canary nor the client's secret."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read")
    payload, secret = f"canary-payload-{uuid.uuid4().hex}", f"canary-secret-{uuid.uuid4().hex}"
    task_id = _fail_with_canaries(owner, payload, secret)
    wait_for(
        lambda: redis_client.zscore("tg:dlq", task_id) is not None,
        timeout=30,
        what="the task dead-lettered",
    )
    http, _ = sign_in(console_gateway, admin_token)
    with closing(http):
        bodies = [http.get(path).text for path in PAGES]
        bodies.append(http.get(f"/console/tasks/{task_id}").text)
        bodies.append(http.get("/console/tasks", params={"owner": owner.client_id}).text)
        bodies.append(http.get("/console/audit", params={"target": task_id}).text)
        bodies.append(http.get("/console/audit/verify").text)
    assert task_id in bodies[2]  # it is listed as a dead letter
    assert "task.dead_lettered" in bodies[len(PAGES)]  # its page shows its events
    assert task_id in bodies[-3]  # and found by its owner
    for body in bodies:
        for canary in (payload, secret, owner.secret):
            assert canary not in body


def test_http_responses_of_the_console_carry_no_stack_trace(
    console_gateway: Gateway, admin_token: str
) -> None:
    """Odd input gives a page or a refusal, never a trace."""
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):
        for response in (
            http.get("/console/tasks/../../etc/passwd"),
            http.get("/console/tasks", params={"since": "not a time", "status": "x" * 500}),
            http.get("/console/audit", params={"before": "junk", "outcome": "nope"}),
            http.post("/console/clients", data={"csrf": csrf, "name": "../x", "scope": "root"}),
            http.post("/console/clients/ghost-0123abcd/rotate-secret", data={"csrf": csrf}),
        ):
            assert response.status_code in {200, 404, 422}, response.text[:300]
            assert "Traceback" not in response.text


def test_a_group_requeue_audits_each_requeue_once_in_its_own_call(
    console_gateway: Gateway, admin_token: str, make_client: Any, redis_client: redis.Redis
) -> None:
    """Requeuing a group of dead letters from the console queues each with exactly one
    'ok' record (written with the requeue), then the group's own record."""
    owner: ApiClient = make_client("tasks:submit:* tasks:read")
    with owner.http() as http:
        ids = [
            str(http.post("/v1/tasks/test.fail_quoting_input", json={"note": "g"}).json()["id"])
            for _ in range(2)
        ]
    wait_for(
        lambda: all(redis_client.zscore("tg:dlq", task_id) is not None for task_id in ids),
        timeout=30,
        what="both tasks dead-lettered",
    )
    reason = redis_client.hget(f"tg:dlq:{ids[0]}", "reason")
    assert reason is not None
    http, csrf = sign_in(console_gateway, admin_token)
    with closing(http):
        form = {"csrf": csrf, "task": "test.fail_quoting_input", "reason": as_text(reason)}
        form["confirm"] = "yes"
        response = http.post("/console/dead-letters/group", data={**form, "op": "requeue"})
    assert response.status_code == 303, response.text[:300]
    requeues = _audited(redis_client, "admin.dlq.requeue")
    for task_id in ids:
        assert [(actor, outcome) for actor, outcome, target in requeues if target == task_id] == [
            ("admin", "ok")
        ]
    assert [outcome for _, outcome, _ in _audited(redis_client, "admin.dlq.group_requeue")] == [
        "ok"
    ]


def test_the_task_search_offers_every_state_and_filters_by_it(
    console_gateway: Gateway, admin_token: str, make_client: Any, redis_client: redis.Redis
) -> None:
    """The State filter lists exactly the task states, and picking one finds the tasks in it."""
    owner: ApiClient = make_client("tasks:submit:test.touch tasks:read")
    with owner.http() as api:
        accepted = api.post("/v1/tasks/test.touch", json={"note": "state filter", "token": "t"})
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["id"]
    wait_for(
        lambda: redis_client.hget(f"tg:task:{task_id}", "state") == b"succeeded",
        timeout=30,
        what="the task succeeded",
    )
    http, _ = sign_in(console_gateway, admin_token)
    with closing(http):
        page = http.get("/console/tasks").text
        select = page.split('id="f-status"', 1)[1].split("</select>", 1)[0]
        offered = re.findall(r'<option value="([^"]*)"', select)
        assert offered == ["", *TaskState]  # "any", then every state in order
        found = {
            state: task_id
            in http.get("/console/tasks", params={"owner": owner.client_id, "status": state}).text
            for state in (TaskState.SUCCEEDED, TaskState.QUEUED, TaskState.STARTED)
        }
    assert found == {TaskState.SUCCEEDED: True, TaskState.QUEUED: False, TaskState.STARTED: False}
