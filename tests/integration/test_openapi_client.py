"""The OpenAPI document is something a code generator can use: it validates, every answer
(client and admin API, token, probes; every problem) has a named schema, and a client
generated from it by openapi-python-client submits a task and polls it to its result
against the real gateway.

The validator and the generator live in the tools environment (`make install` builds
``.venv-tools``): the generator pins older typer and httpx than the project's.
``TASKGATE_TOOLS_PYTHON`` names another interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateways import ApiClient, Gateway

pytestmark = pytest.mark.integration

NAMED = {
    ("post", "/v1/token", "200"): "TokenResponse",
    ("get", "/v1/tasks/catalog", "200"): "Catalogue",
    ("get", "/v1/tasks", "200"): "TaskPage",
    ("get", "/v1/tasks/{task_id}", "200"): "TaskView",
    ("delete", "/v1/tasks/{task_id}", "202"): "Cancellation",
    ("post", "/v1/tasks/test.touch", "202"): "Accepted",
    ("get", "/v1/admin/clients", "200"): "ClientList",
    ("post", "/v1/admin/clients", "201"): "CreatedClient",
    ("post", "/v1/admin/clients/{client_id}/rotate-secret", "200"): "RotatedSecret",
    ("post", "/v1/admin/tokens/revoke", "200"): "RevokedToken",
    ("get", "/v1/admin/tasks", "200"): "AdminTaskPage",
    ("get", "/v1/admin/tasks/{task_id}", "200"): "AdminTaskRecord",
    ("post", "/v1/admin/tasks/{task_id}/revoke", "202"): "TaskRevoked",
    ("post", "/v1/admin/dead-letters/{task_id}/requeue", "202"): "Requeued",
    ("get", "/v1/admin/dead-letters", "200"): "DeadLetterPage",
    ("get", "/v1/admin/stats", "200"): "Stats",
    ("get", "/v1/admin/audit", "200"): "AuditPage",
    ("get", "/v1/admin/audit/verify", "200"): "AuditVerification",
}
# Answers that are not JSON: the Prometheus text format.
NOT_JSON = {("get", "/metrics", "200")}


def _tools_python() -> Path:
    chosen = os.environ.get("TASKGATE_TOOLS_PYTHON")
    candidates = [Path(chosen)] if chosen else []
    candidates += [
        Path(__file__).resolve().parents[2] / ".venv-tools" / "bin" / "python",
        Path(sys.executable).parents[2] / ".venv-tools" / "bin" / "python",
    ]
    for path in candidates:
        if path.exists():
            return path
    pytest.fail(f"no tools environment at {candidates[0]}: run `make install`", pytrace=False)


def _document(gateway: Gateway) -> dict[str, Any]:
    with gateway.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in _keys(value)}
    return set()


def test_every_answer_has_a_named_schema(gateway_server: Gateway) -> None:
    """Every operation - client API, admin API, token, probes, metrics - and every problem
    it answers with: a $ref to a named component each (the metrics' text aside), and every
    $ref resolves."""
    doc = _document(gateway_server)
    components = doc["components"]["schemas"]
    assert any(path.startswith("/v1/admin/") for path in doc["paths"])
    assert not any(path.startswith("/console") for path in doc["paths"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert any(status.startswith("2") for status in operation["responses"]), path
            for status, response in operation["responses"].items():
                assert response.get("content"), (method, path, status)  # a body is described
                for media, content in response["content"].items():
                    if (method, path, status) in NOT_JSON:
                        assert media.startswith("text/plain"), (method, path, status)
                        continue
                    ref = content.get("schema", {}).get("$ref", "")
                    assert ref.startswith("#/components/schemas/"), (method, path, status)
                    assert ref.removeprefix("#/components/schemas/") in components, ref
                    if media == "application/problem+json":
                        assert ref.endswith("/Problem"), (method, path, status)
                    expected = NAMED.get((method, path, status))
                    if expected:
                        assert ref.endswith(f"/{expected}"), (method, path, status, ref)
    error = doc["components"]["schemas"]["TaskView"]["properties"]["error"]
    assert error["anyOf"][0]["$ref"].endswith("/TaskError")  # always an object (or absent)
    assert not _keys(doc) & {"ge", "le", "gt", "lt"}  # no pydantic-internal constraint names


def test_a_generated_client_submits_and_polls_a_task(
    gateway_server: Gateway, make_client: Any, tmp_path: Path
) -> None:
    """openapi-spec-validator accepts the document; openapi-python-client generates a
    client from it (offline); that client submits test.touch and polls it to its result."""
    python = _tools_python()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(_document(gateway_server)))
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
    validated = subprocess.run(
        [str(python), "-m", "openapi_spec_validator", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    generated = subprocess.run(
        [
            str(python.parent / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "gen_client"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert (tmp_path / "gen_client" / "api" / "tasks").is_dir(), generated.stdout
    client: ApiClient = make_client()
    script = tmp_path / "use_generated.py"
    script.write_text(_USE_GENERATED)
    used = subprocess.run(
        [str(python), str(script), gateway_server.url, str(gateway_server.ca_file)],
        input=client.token(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert used.returncode == 0, used.stdout + used.stderr
    outcome = json.loads(used.stdout.strip().splitlines()[-1])
    assert outcome["accepted"] == "queued"
    assert outcome["status"] == "succeeded"
    assert outcome["result"]["note_length"] == len("generated")
    assert outcome["missing"] == "Problem"  # a 404 parses as the named problem type


# Runs in the tools environment with the generated package importable from its cwd.
_USE_GENERATED = """
import importlib, json, ssl, sys, time, typing, uuid
from gen_client import AuthenticatedClient
from gen_client.api.tasks import get_task_v1_tasks_task_id_get as get_task
submit = importlib.import_module(
    "gen_client.api.tasks.submit_test_touch_v1_tasks_test_touch_post")
url, ca = sys.argv[1], sys.argv[2]
token = sys.stdin.read().strip()
client = AuthenticatedClient(base_url=url, token=token,
                             verify_ssl=ssl.create_default_context(cafile=ca),
                             raise_on_unexpected_status=True)
body_type = typing.get_type_hints(submit.sync_detailed)["body"]
accepted = submit.sync(client=client, body=body_type.from_dict({"note": "generated"}))
assert type(accepted).__name__ == "Accepted", accepted
deadline = time.monotonic() + 30
while True:
    view = get_task.sync(str(accepted.id), client=client)
    assert type(view).__name__ == "TaskView", view
    status = str(getattr(view.status, "value", view.status))
    if status in {"succeeded", "failed", "dead_lettered", "revoked"} or time.monotonic() > deadline:
        break
    time.sleep(0.2)
result = view.result
result = result.to_dict() if hasattr(result, "to_dict") else result
missing = get_task.sync(str(uuid.uuid4()), client=client)
print(json.dumps({"accepted": str(getattr(accepted.status, "value", accepted.status)),
                  "status": status, "result": result, "missing": type(missing).__name__}))
"""
