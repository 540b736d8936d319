"""Each process kind logs in to Redis as its role, with a password from a 0600 file or
``TASKGATE_REDIS_PASSWORD``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.settings import GatewaySettings, OperatorSettings
from security.config import CommonSettings
from security.errors import ConfigError
from workers.settings import WorkerSettings

URL = "rediss://localhost:6390/0"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder with (dummy) certificate files and every role's password file."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_"):
            monkeypatch.delenv(name)
    certs = tmp_path / "certs"
    certs.mkdir()
    stems = ("gateway-client", "worker-client", "operator-client", "https")
    (certs / "ca.pem").write_text("x")
    for stem in stems:
        (certs / f"{stem}.pem").write_text("x")
        key = certs / f"{stem}-key.pem"
        key.write_text("x")
        key.chmod(0o600)
    users = tmp_path / "redis-users"
    users.mkdir(mode=0o700)
    for role in ("gateway", "worker", "operator"):
        (users / f"{role}.password").write_text(f"{role}-password\n")
        (users / f"{role}.password").chmod(0o600)
    return tmp_path


@pytest.mark.parametrize(
    ("cls", "role"),
    [(GatewaySettings, "gateway"), (WorkerSettings, "worker"), (OperatorSettings, "operator")],
)
def test_each_process_kind_logs_in_as_its_role(
    state: Path, cls: type[CommonSettings], role: str
) -> None:
    """Gateway, worker and operator settings default to their own user, certificate and
    password file; the password shows in no repr."""
    settings = cls(state_dir=state, redis_url=URL)
    tls = settings.redis
    assert tls.username == role
    assert tls.client_cert.name == f"{role}-client.pem"
    assert tls.credentials()["password"] == f"{role}-password"
    assert f"{role}-password" not in repr(settings) + repr(tls)


def test_the_environment_password_wins_and_must_not_be_empty(state: Path) -> None:
    """TASKGATE_REDIS_PASSWORD (a secret store) is used instead of the file; empty is refused."""
    settings = WorkerSettings(state_dir=state, redis_url=URL, redis_password=SecretStr("env-pw"))
    assert settings.redis.credentials()["password"] == "env-pw"
    empty = WorkerSettings(state_dir=state, redis_url=URL, redis_password=SecretStr(""))
    with pytest.raises(ConfigError, match="TASKGATE_REDIS_PASSWORD"):
        _ = empty.redis


def test_an_empty_password_file_or_a_bad_username_is_refused(state: Path) -> None:
    """An empty password file and a user name with spaces are configuration errors."""
    (state / "redis-users" / "worker.password").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        _ = WorkerSettings(state_dir=state, redis_url=URL).redis
    with pytest.raises(ConfigError, match="TASKGATE_REDIS_USERNAME"):
        WorkerSettings(state_dir=state, redis_url=URL, redis_username="a b")
