"""Every admin answer is what its named schema in /openapi.json says: each route is called
on real data (clients, finished, failed, queued and dead-lettered tasks, the audit log) and
its answer validated against the model the document names for that status."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from gateway import schemas, schemas_admin
from tests.support.gateways import ApiClient, Gateway

pytestmark = pytest.mark.integration

MODELS: dict[str, type[BaseModel]] = {
    name: getattr(module, name)
    for module in (schemas, schemas_admin)
    for name in module.__all__
    if isinstance(getattr(module, name), type)
}


class Checker:
    """Validates answers against the schema the document declares for their status."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.doc = http.get("/openapi.json").json()
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, method: str, path: str, template: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        declared = self.doc["paths"][template][method.lower()]["responses"]
        status = str(response.status_code)
        assert status in declared, (method, path, status, response.text)
        media = response.headers["content-type"].split(";")[0]
        ref = declared[status]["content"][media]["schema"]["$ref"]
        MODELS[ref.rsplit("/", 1)[1]].model_validate_json(response.content)
        self.seen.add((method.lower(), template))
        return response


def _wait(http: httpx.Client, task_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        view: dict[str, Any] = http.get(f"/v1/tasks/{task_id}").json()
        if view["status"] in states or time.monotonic() > deadline:
            assert view["status"] in states, view
            return view
        time.sleep(0.1)


def _dead(check: Checker, task_id: str, replays: int) -> None:
    deadline = time.monotonic() + 30
    path = f"/v1/admin/dead-letters/{task_id}"
    while True:
        response = check.http.get(path)
        if response.status_code == 200 and response.json()["replays"] == replays:
            check("GET", path, "/v1/admin/dead-letters/{task_id}")
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def test_every_admin_answer_validates_against_its_named_schema(
    gateway_server: Gateway, admin_token: str, make_client: Any
) -> None:
    """Clients, tokens, tasks, dead letters, keys, stats, audit: each answer, 2xx and
    problem alike, matches the model its operation names (extra members refused)."""
    owner: ApiClient = make_client()
    headers = {"Authorization": f"Bearer {admin_token}"}
    with owner.http() as mine, gateway_server.client(headers=headers) as http:
        check = Checker(http)
        done = mine.post("/v1/tasks/test.touch", json={"note": "a"}).json()["id"]
        failed = mine.post("/v1/tasks/test.fail_quoting_input", json={"note": "b"}).json()["id"]
        queued = mine.post("/v1/tasks/test.parked", json={"note": "c"}).json()["id"]
        _wait(mine, done, {"succeeded"})
        _wait(mine, failed, {"dead_lettered"})

        name = f"answers-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "scopes": ["tasks:read"]}
        client_id = check("POST", "/v1/admin/clients", "/v1/admin/clients", json=body).json()[
            "client_id"
        ]
        unknown = {"name": name, "scopes": ["tasks:submit:no.such.task"]}
        refused = check("POST", "/v1/admin/clients", "/v1/admin/clients", json=unknown)
        assert refused.status_code == 422
        check("GET", "/v1/admin/clients", "/v1/admin/clients")
        one = "/v1/admin/clients/{client_id}"
        for action in ("rotate-secret", "disable", "enable"):
            assert check(
                "POST", f"/v1/admin/clients/{client_id}/{action}", f"{one}/{action}"
            ).is_success
        assert (
            check("POST", "/v1/admin/clients/nobody/disable", f"{one}/disable").status_code == 404
        )
        revoke = "/v1/admin/tokens/revoke"
        assert check("POST", revoke, revoke, json={"token": owner.token()}).is_success
        assert check("POST", revoke, revoke, json={"jti": "x"}).status_code == 422

        task = "/v1/admin/tasks/{task_id}"
        listed = check("GET", "/v1/admin/tasks", "/v1/admin/tasks", params={"limit": 200})
        assert {done, failed, queued} <= {item["id"] for item in listed.json()["items"]}
        for task_id in (done, failed):
            check("GET", f"/v1/admin/tasks/{task_id}", task)
        assert check("GET", f"/v1/admin/tasks/{uuid.uuid4()}", task).status_code == 404
        assert check("POST", f"/v1/admin/tasks/{queued}/revoke", f"{task}/revoke").is_success
        assert check("POST", f"/v1/admin/tasks/{done}/revoke", f"{task}/revoke").status_code == 409

        dead = "/v1/admin/dead-letters/{task_id}"
        check("GET", "/v1/admin/dead-letters", "/v1/admin/dead-letters")
        _dead(check, failed, replays=0)
        assert check("POST", f"/v1/admin/tasks/{failed}/retry", f"{task}/retry").is_success
        _dead(check, failed, replays=1)
        requeue = f"/v1/admin/dead-letters/{failed}/requeue"
        assert check("POST", requeue, f"{dead}/requeue").is_success
        _dead(check, failed, replays=2)
        assert check("DELETE", f"/v1/admin/dead-letters/{failed}", dead).is_success
        assert check("GET", f"/v1/admin/dead-letters/{failed}", dead).status_code == 404

        check("GET", "/v1/admin/keys", "/v1/admin/keys")
        deadline = time.monotonic() + 30  # the workers' figures arrive with their next flush
        while (
            "test.touch" not in check("GET", "/v1/admin/stats", "/v1/admin/stats").json()["tasks"]
        ):
            assert time.monotonic() < deadline, "no window stats for test.touch"
            time.sleep(0.2)
        check("GET", "/v1/admin/audit", "/v1/admin/audit", params={"limit": 20})
        check("GET", "/v1/admin/audit/verify", "/v1/admin/audit/verify", params={"limit": 50})
    admin_paths = {
        (method, path)
        for path, item in check.doc["paths"].items()
        if path.startswith("/v1/admin/")
        for method in item
    }
    assert admin_paths <= check.seen, admin_paths - check.seen
