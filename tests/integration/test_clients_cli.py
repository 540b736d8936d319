"""``taskgate clients`` against the session stack's real TLS Redis.

Adding, listing, disabling, enabling and rotating clients from the command line: the
secret shown once and never stored plain, and the exit codes of refusals.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
import redis.asyncio
from typer.testing import CliRunner

from gateway.stores.clients import CLIENTS_SET, client_key
from security.passwords import verify_client_secret
from taskgate.cli.clients import app
from taskgate.devstack.procs import free_port
from tests.support.replies import as_text
from tests.support.stored_keys import stored_keys as _stored_keys

pytestmark = pytest.mark.integration


# --- CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    stack_env: dict[str, str],
    redis_client: redis.Redis,
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> redis.Redis:
    """TASKGATE_* from the session stack, the CLI acting as the bootstrap operator
    ``admin``; the database flushed; returns a sync client."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_"):
            monkeypatch.delenv(name)
    for name, value in stack_env.items():
        if name.startswith("TASKGATE_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TASKGATE_OPERATOR_TOKEN", admin_token)
    return redis_client


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _stored_hash(client: redis.Redis, client_id: str) -> str:
    value = client.hget(client_key(client_id), "secret_hash")
    assert value is not None
    return as_text(value)


def test_cli_add_json_prints_id_secret_scopes_once(cli_env: redis.Redis) -> None:
    """add --json prints exactly client_id, client_secret, scopes; the secret verifies."""
    result = _cli("add", "Billing", "--scopes", "tasks:read tasks:submit:test.touch", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"client_id", "client_secret", "scopes"}
    assert out["scopes"] == ["tasks:read", "tasks:submit:test.touch"]
    assert out["client_id"].startswith("billing-")
    assert verify_client_secret(out["client_secret"], _stored_hash(cli_env, out["client_id"]))
    assert result.stdout.count(out["client_secret"]) == 1


def test_cli_add_text_warns_the_secret_is_shown_once(cli_env: redis.Redis) -> None:
    """The text form prints id, secret and scopes, and warns the secret will not be shown again."""
    result = _cli(
        "add", "app", "--scope", "tasks:read", "--scope", "audit:read", "--rate-limit", "5/second"
    )
    assert result.exit_code == 0, result.output
    assert "client_id:" in result.stdout
    assert "client_secret: tgs_" in result.stdout
    assert "scopes:        audit:read tasks:read" in result.stdout
    assert "shown only this once" in result.stderr
    (member,) = cli_env.smembers(CLIENTS_SET)
    assert cli_env.hget(client_key(as_text(member)), "rate_limit") == b"5/second"


def test_cli_add_combines_scopes_and_scope(cli_env: redis.Redis) -> None:
    """--scopes and repeated --scope add up."""
    result = _cli("add", "app", "--scopes", "tasks:read", "--scope", "audit:read", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scopes"] == ["audit:read", "tasks:read"]


@pytest.mark.parametrize(
    "args",
    [
        ["add", "app", "--scopes", "root"],
        ["add", "app"],
        ["add", "../app", "--scopes", "tasks:read"],
        ["add", "app", "--scopes", "tasks:read", "--rate-limit", "lots"],
        ["add", "app", "--scopes", "tasks:read", "--max-queued", "0"],
    ],
)
def test_cli_add_refuses_bad_input(cli_env: redis.Redis, args: list[str]) -> None:
    """Bad scopes, names or limits exit 1 with a message, and nothing is stored."""
    result = _cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("taskgate clients: ")
    assert _stored_keys(cli_env) == []


def test_cli_list_never_shows_secrets(cli_env: redis.Redis) -> None:
    """list (text and JSON) shows the clients but no secret and no hash."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    as_json = _cli("list", "--json")
    as_text = _cli("list")
    assert as_json.exit_code == as_text.exit_code == 0
    (row,) = json.loads(as_json.stdout)
    assert row["client_id"] == added["client_id"]
    assert row["scopes"] == ["tasks:read"]
    assert added["client_id"] in as_text.stdout
    assert "enabled" in as_text.stdout
    for output in (as_json.output, as_text.output):
        assert added["client_secret"] not in output
        assert "scrypt" not in output
        assert "secret_hash" not in output


def test_cli_list_empty(cli_env: redis.Redis) -> None:
    """With no clients, list says so (and --json prints [])."""
    assert "no clients registered" in _cli("list").stdout
    assert json.loads(_cli("list", "--json").stdout) == []


def test_cli_disable_and_enable(cli_env: redis.Redis) -> None:
    """disable and enable flip the stored flag."""
    client_id = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)[
        "client_id"
    ]
    result = _cli("disable", client_id)
    assert (result.exit_code, result.stdout) == (0, f"disabled {client_id}\n")
    assert cli_env.hget(client_key(client_id), "disabled") == b"1"
    assert "disabled" in _cli("list").stdout
    result = _cli("enable", client_id)
    assert (result.exit_code, result.stdout) == (0, f"enabled {client_id}\n")
    assert cli_env.hget(client_key(client_id), "disabled") == b"0"


@pytest.mark.parametrize("command", ["disable", "enable", "rotate-secret"])
@pytest.mark.parametrize(
    ("client_id", "shown"), [("ghost-0123abcd", "ghost-0123abcd"), ("../x", "(malformed id)")]
)
def test_cli_unknown_client_exits_1(
    cli_env: redis.Redis, command: str, client_id: str, shown: str
) -> None:
    """An unknown or malformed id exits 1 with a clear message and writes nothing."""
    result = _cli(command, client_id)
    assert result.exit_code == 1
    assert result.stderr == f"taskgate clients: no client {shown}\n"
    assert _stored_keys(cli_env) == []


def test_cli_rotate_secret_json(cli_env: redis.Redis) -> None:
    """rotate-secret --json prints the new secret; the old one no longer verifies."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    result = _cli("rotate-secret", added["client_id"], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"client_id", "client_secret"}
    stored = _stored_hash(cli_env, added["client_id"])
    assert verify_client_secret(out["client_secret"], stored)
    assert not verify_client_secret(added["client_secret"], stored)


def test_cli_rotate_secret_text_warns(cli_env: redis.Redis) -> None:
    """rotate-secret in text form prints the secret with the shown-once warning."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    result = _cli("rotate-secret", added["client_id"])
    assert result.exit_code == 0, result.output
    assert f"client_id:     {added['client_id']}" in result.stdout
    assert "client_secret: tgs_" in result.stdout
    assert "scopes:" not in result.stdout
    assert "shown only this once" in result.stderr


def test_cli_refuses_unsafe_settings_with_exit_2(
    cli_env: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain redis:// URL is refused before anything runs: one line, exit 2."""
    monkeypatch.setenv("TASKGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = _cli("list")
    assert result.exit_code == 2
    assert result.stderr.startswith("taskgate clients: refused: TASKGATE_REDIS_URL")


def test_cli_unreachable_redis_exits_1(
    cli_env: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis down the CLI says so and exits 1 (no traceback)."""
    monkeypatch.setenv("TASKGATE_REDIS_URL", f"rediss://localhost:{free_port()}/0")
    result = _cli("list")
    assert result.exit_code == 1
    assert "cannot use Redis (ConnectionError)" in result.stderr
