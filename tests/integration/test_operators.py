"""Named operators: CLI add/list/revoke, roles over HTTP, CLI changes audited by name."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from typer.testing import CliRunner

from gateway.stores.operators import OperatorError, OperatorRegistry
from security.audit import iter_records
from security.keystore import KeyRing
from security.passwords import hash_admin_token
from taskgate.cli.main import app
from tests.support.gateways import Gateway
from tests.support.replies import as_fields
from workers.contract.keys import operator_key

pytestmark = pytest.mark.integration

_TASK = "0f0e0d0c-0b0a-4000-8000-000000000001"


@pytest.fixture
def cli(stack_env: dict[str, str], redis_client: redis.Redis) -> Any:
    """Run `taskgate` with the session's TASKGATE_* and the given operator credential."""

    def run(*args: str, token: str | None = None, extra: dict[str, str] | None = None) -> Any:
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TASKGATE_")}
        env |= {k: v for k, v in stack_env.items() if k.startswith("TASKGATE_")}
        if token is not None:
            env["TASKGATE_OPERATOR_TOKEN"] = token
        env |= extra or {}
        return CliRunner().invoke(app, list(args), env=env)

    return run


def _audited(client: redis.Redis, action: str) -> list[tuple[str, str, str]]:
    return [
        (e.record.actor, e.record.outcome, e.record.target)
        for e in iter_records(client)
        if e.record.action == action
    ]


def _http(gateway: Gateway, token: str) -> httpx.Client:
    return gateway.client(headers={"Authorization": f"Bearer {token}"})


def test_cli_adds_an_operator_whose_credential_is_shown_once_and_stored_hashed(
    cli: Any, admin_token: str, redis_client: redis.Redis
) -> None:
    """`operators add` prints the credential once; Redis holds only its SHA-256; audited."""
    result = cli("operators", "add", "alice", "--role", "auditor", "--json", token=admin_token)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["name"], out["role"]) == ("alice", "auditor")
    credential = out["credential"]
    assert credential.startswith("tga_alice.")
    stored = as_fields(redis_client.hgetall(operator_key("alice")))
    assert stored[b"token_hash"].decode() == hash_admin_token(credential)
    assert credential.encode() not in b"".join(stored.values())
    assert "shown only this once" in result.stderr
    assert ("admin", "ok", "alice") in _audited(redis_client, "operators.add")
    listed = cli("operators", "list", "--json", token=credential)
    assert listed.exit_code == 0, listed.output
    assert [r["name"] for r in json.loads(listed.stdout)] == ["alice"]
    assert credential not in listed.output


def test_cli_refuses_without_a_credential_and_an_auditor_making_changes(
    cli: Any, make_operator: Any, redis_client: redis.Redis
) -> None:
    """No credential: exit 2. An auditor's change: exit 2, audited as denied under its name."""
    missing = cli("clients", "add", "app", "--scopes", "tasks:read")
    assert missing.exit_code == 2
    assert "TASKGATE_OPERATOR_TOKEN" in missing.stderr
    name, token = make_operator("auditor")
    for args in (
        ("clients", "add", "app", "--scopes", "tasks:read"),
        ("operators", "add", "eve", "--role", "admin"),
        ("dlq", "purge", _TASK),
    ):
        result = cli(*args, token=token)
        assert result.exit_code == 2, (args, result.output)
        assert "admin role" in result.stderr
    assert len([r for r in _audited(redis_client, "operator.forbidden") if r[0] == name]) == 3
    assert redis_client.exists(operator_key("eve")) == 0
    wrong = cli("clients", "list", token=token[:-2] + "xx")
    assert wrong.exit_code == 2
    assert "not valid" in wrong.stderr


def test_cli_client_changes_are_audited_under_the_operator_name(
    cli: Any, make_operator: Any, redis_client: redis.Redis
) -> None:
    """clients add/disable/enable/rotate-secret through the CLI leave records naming who."""
    name, token = make_operator("admin")
    added = cli("clients", "add", "app", "--scopes", "tasks:read", "--json", token=token)
    assert added.exit_code == 0, added.output
    client_id = json.loads(added.stdout)["client_id"]
    for command in ("disable", "enable", "rotate-secret"):
        assert cli("clients", command, client_id, token=token).exit_code == 0
    for action in ("create", "disable", "enable", "rotate_secret"):
        assert (name, "ok") in [r[:2] for r in _audited(redis_client, f"admin.clients.{action}")]


def test_cli_refuses_a_scope_naming_an_unknown_task(
    cli: Any, admin_token: str, redis_client: redis.Redis
) -> None:
    """`clients add --scopes tasks:submit:test.touc` (a typo) is refused and nothing stored."""
    result = cli("clients", "add", "app", "--scopes", "tasks:submit:test.touc", token=admin_token)
    assert result.exit_code == 1
    assert "unknown task test.touc" in result.stderr
    assert redis_client.smembers("tg:clients") == set()


def test_http_refuses_a_scope_naming_an_unknown_task(
    gateway_server: Gateway, admin_token: str
) -> None:
    """POST /v1/admin/clients with a scope for a task not in the catalogue: 422."""
    with _http(gateway_server, admin_token) as http:
        response = http.post(
            "/v1/admin/clients", json={"name": "typo", "scopes": ["tasks:submit:report.generat"]}
        )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_revoked_operator_is_refused_at_once(
    cli: Any, gateway_server: Gateway, admin_token: str, make_operator: Any
) -> None:
    """After `operators revoke` the credential opens nothing."""
    name, token = make_operator("admin")
    with _http(gateway_server, token) as http:
        assert http.get("/v1/admin/stats").status_code == 200
    assert cli("operators", "revoke", name, token=admin_token).exit_code == 0
    with _http(gateway_server, token) as http:
        assert http.get("/v1/admin/stats").status_code == 401


def _changing_routes(gateway: Gateway, token: str) -> list[tuple[str, str]]:
    with _http(gateway, token) as http:
        spec = http.get("/openapi.json").json()
    routes = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1/admin"):
            continue
        for method in methods:
            if method in {"post", "put", "patch", "delete"}:
                filled = path.replace("{client_id}", "ghost-0123abcd").replace("{task_id}", _TASK)
                routes.append((method.upper(), filled))
    return routes


def test_auditor_reads_but_every_state_changing_route_is_403_and_audited(
    gateway_server: Gateway, make_operator: Any, redis_client: redis.Redis
) -> None:
    """An auditor reads task metadata, the audit log and verify; every admin POST/DELETE is
    403, each refusal audited under the auditor's name."""
    name, token = make_operator("auditor")
    routes = _changing_routes(gateway_server, token)
    assert len(routes) >= 9
    with _http(gateway_server, token) as http:
        for path in ("/v1/admin/tasks", "/v1/admin/audit", "/v1/admin/audit/verify"):
            assert http.get(path).status_code == 200, path
        for method, path in routes:
            response = http.request(method, path, json={"name": "x", "scopes": ["tasks:read"]})
            assert response.status_code == 403, (method, path, response.text)
    refused = [r for r in _audited(redis_client, "operator.forbidden") if r[0] == name]
    assert sorted(r[2] for r in refused) == sorted(f"{m} {p}" for m, p in routes)
    assert ("audit.read" in {e.record.action for e in iter_records(redis_client)}) is True


def test_named_admin_actions_are_audited_under_its_name(
    gateway_server: Gateway, make_operator: Any, redis_client: redis.Redis
) -> None:
    """A client created by operator bob is recorded with actor bob, not "admin"."""
    name, token = make_operator("admin", name=f"bob{uuid.uuid4().hex[:6]}")
    with _http(gateway_server, token) as http:
        created = http.post("/v1/admin/clients", json={"name": "x", "scopes": ["tasks:read"]})
    assert created.status_code == 201
    assert _audited(redis_client, "admin.clients.create") == [
        (name, "ok", created.json()["client_id"])
    ]


def test_a_forged_operator_record_is_refused(
    gateway_server: Gateway, make_operator: Any, redis_client: redis.Redis
) -> None:
    """Raising an auditor to admin by writing Redis (no state key) opens nothing."""
    name, token = make_operator("auditor")
    redis_client.hset(operator_key(name), "role", "admin")
    with _http(gateway_server, token) as http:
        assert http.get("/v1/admin/stats").status_code == 401
        assert http.post("/v1/admin/clients/ghost-0123abcd/disable").status_code == 401


def test_keys_rotate_needs_an_admin_operator_and_is_audited(
    cli: Any, make_operator: Any, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """`keys rotate` without a credential is refused; with one it is audited by name."""
    assert cli("keys", "init", "--state-dir", str(tmp_path)).exit_code == 0
    args = ("keys", "rotate", "-p", "broker", "--state-dir", str(tmp_path))
    refused = cli(*args)
    assert refused.exit_code == 2
    assert "TASKGATE_OPERATOR_TOKEN" in refused.stderr
    name, token = make_operator("admin")
    done = cli(*args, token=token)
    assert done.exit_code == 0, done.output
    assert "restart workers first, then gateways" in done.stdout
    assert _audited(redis_client, "keys.rotate") == [(name, "ok", "broker")]


def test_task_routes_take_operators_reads_for_auditors_cancel_for_admins(
    gateway_server: Gateway, make_operator: Any, make_client: Any, redis_client: redis.Redis
) -> None:
    """GET /v1/tasks/{id} takes an auditor (metadata, no result); DELETE needs an admin and
    is audited under the admin's name."""
    owner = make_client("tasks:submit:* tasks:read")
    with owner.http() as http:
        task_id = http.post("/v1/tasks/test.parked", json={"note": "x"}).json()["id"]
    auditor, auditor_token = make_operator("auditor")
    admin, admin_token = make_operator("admin")
    with _http(gateway_server, auditor_token) as http:
        seen = http.get(f"/v1/tasks/{task_id}")
        refused = http.delete(f"/v1/tasks/{task_id}")
    assert seen.status_code == 200
    assert "result" not in seen.json()
    assert refused.status_code == 403
    assert (auditor, "denied", f"DELETE /v1/tasks/{task_id}") in _audited(
        redis_client, "operator.forbidden"
    )
    with _http(gateway_server, admin_token) as http:
        assert http.delete(f"/v1/tasks/{task_id}").status_code == 202
    assert [r[:2] for r in _audited(redis_client, "task.cancel")] == [(admin, "ok")]


def test_openapi_names_the_catalogue_tasks_in_the_client_scope_pattern(
    gateway_server: Gateway, admin_token: str
) -> None:
    """The create-client schema allows tasks:submit:<task> only for the catalogue's tasks."""
    with _http(gateway_server, admin_token) as http:
        spec = http.get("/openapi.json").json()
    pattern = spec["components"]["schemas"]["NewClient"]["properties"]["scopes"]["items"]
    assert "test\\.touch" in pattern["pattern"]
    assert "[a-z0-9._-]" not in pattern["pattern"]


def test_cli_reads_the_credential_from_a_private_file_only(
    cli: Any, admin_token: str, tmp_path: Path
) -> None:
    """TASKGATE_OPERATOR_TOKEN_FILE works at mode 0600 and is refused when others can read it."""
    path = tmp_path / "operator-token"
    path.write_text(admin_token + "\n")
    path.chmod(0o600)
    extra = {"TASKGATE_OPERATOR_TOKEN_FILE": str(path)}
    assert cli("operators", "list", extra=extra).exit_code == 0
    path.chmod(0o644)
    exposed = cli("operators", "list", extra=extra)
    assert exposed.exit_code == 2
    assert "TASKGATE_OPERATOR_TOKEN_FILE" in exposed.stderr


async def test_renew_replaces_the_credential_and_lifts_a_revocation(
    async_redis: redis.asyncio.Redis, keyring: KeyRing, redis_client: redis.Redis
) -> None:
    """renew: the old credential stops working, the new one names the same operator and
    role, a revoked operator is active again; an unknown name is refused."""
    registry = OperatorRegistry(async_redis, keyring.state)
    _, first = await registry.add("renewme", "auditor")
    await registry.revoke("renewme")
    assert await registry.authenticate(first) is None
    operator, second = await registry.renew("renewme")
    assert (operator.name, operator.role, operator.revoked) == ("renewme", "auditor", False)
    assert await registry.authenticate(first) is None
    renewed = await registry.authenticate(second)
    assert renewed is not None
    assert renewed.name == "renewme"
    assert second not in repr(redis_client.hgetall(operator_key("renewme")))
    with pytest.raises(OperatorError) as info:
        await registry.renew("ghost")
    assert info.value.reason == "unknown_operator"
