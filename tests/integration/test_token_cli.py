"""`taskgate token` asks the running gateway for a token, like any client."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskgate.cli.main import app
from tests.support.gateways import ApiClient

pytestmark = pytest.mark.integration


def _run(args: list[str]) -> Any:
    clean = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    return CliRunner().invoke(app, args, env=clean)


def test_token_command_prints_a_token_the_gateway_accepts(make_client: Any, tmp_path: Path) -> None:
    """With a stack.json like `up` writes, stdout is only a working access token; stderr
    names the stack, the gateway and the client (never the secret)."""
    client: ApiClient = make_client("tasks:read")
    (tmp_path / "stack.json").write_text(
        json.dumps(
            {
                "gateway_url": client.gateway.url,
                "redis_url": "rediss://localhost:1/0",
                "ca_file": str(client.gateway.ca_file),
                "demo_client": {"client_id": client.client_id, "client_secret": client.secret},
            }
        )
    )
    result = _run(["token", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.count(".") == 2
    assert len(result.stdout.splitlines()) == 1
    assert f"using the stack in {tmp_path.resolve()}" in result.stderr
    assert client.gateway.url in result.stderr
    assert client.client_id in result.stderr
    assert client.secret not in result.output
    with client.gateway.client(headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/v1/tasks").status_code == 200


def test_token_command_with_a_wrong_secret_fails_without_printing_it(
    make_client: Any, tmp_path: Path
) -> None:
    """A refused grant exits 1 with the OAuth error on stderr, and the secret is not echoed;
    with every option given, no stack.json is read or named."""
    client: ApiClient = make_client("tasks:read")
    result = _run(
        [
            "token",
            "--client-id", client.client_id,
            "--client-secret", "tgs_wrong-secret-value-0000000000000000000",
            "--gateway-url", client.gateway.url,
            "--ca-file", str(client.gateway.ca_file),
            "--state-dir", str(tmp_path),
        ]
    )  # fmt: skip
    assert result.exit_code == 1
    assert "invalid_client" in result.stderr
    assert not result.stdout
    assert "wrong-secret" not in result.output
    assert "using the stack" not in result.stderr


def test_token_command_without_anything_to_go_on_exits_2(tmp_path: Path) -> None:
    """No stack.json and no options: exit 2 with what is needed, on stderr."""
    result = _run(["token", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--client-id" in result.stderr
    assert str(tmp_path / "stack.json") in result.stderr
    assert not result.stdout
