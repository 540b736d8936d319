"""The Redis ACL user's credentials: carried by RedisTLS, never shown; the admin probe."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from security.errors import ConfigError
from security.redis_check import ADMIN_FIX, admin_user, warn_if_admin
from security.tls import RedisTLS, check_secret_file

SECRET = "pw-0f1e2d3c4b5a"


def _tls(username: str | None = "worker", password: str | None = SECRET) -> RedisTLS:
    return RedisTLS(
        "rediss://localhost:6390/0",
        Path("ca.pem"),
        Path("c.pem"),
        Path("k.pem"),
        username=username,
        password=SecretStr(password) if password is not None else None,
    )


def test_credentials_reach_redis_py_and_celery_but_no_repr() -> None:
    """redis-py gets username and password, Celery gets them as settings (not in the URL),
    the TLS dict gets neither, and no repr shows the password."""
    tls = _tls()
    assert tls.redis_kwargs()["username"] == "worker"
    assert tls.redis_kwargs()["password"] == SECRET
    assert "password" not in tls.celery_ssl()
    assert tls.celery_credentials() == {
        "broker_user": "worker",
        "broker_password": SECRET,
        "redis_username": "worker",
        "redis_password": SECRET,
    }
    assert SECRET not in tls.url
    assert SECRET not in repr(tls)
    assert SECRET not in str(tls)


def test_without_a_user_there_are_no_credentials() -> None:
    """A RedisTLS without a user passes nothing (Redis then refuses the connection)."""
    tls = _tls(None, None)
    assert tls.credentials() == {}
    assert tls.celery_credentials() == {}
    assert "username" not in tls.redis_kwargs()


@pytest.mark.parametrize(("username", "password"), [("worker", None), (None, SECRET)])
def test_a_user_without_a_password_or_the_reverse_is_refused(
    username: str | None, password: str | None
) -> None:
    """Half a set of credentials is a configuration error, not an anonymous connection."""
    with pytest.raises(ConfigError, match="REDIS_USERNAME"):
        _tls(username, password)


def test_secret_file_must_exist_and_be_private(tmp_path: Path) -> None:
    """A missing password file and a group-readable one are refused, naming the fix."""
    path = tmp_path / "worker.password"
    with pytest.raises(ConfigError, match="does not exist"):
        check_secret_file(path, setting="S", hint="write it")
    path.write_text(SECRET)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        check_secret_file(path, setting="S", hint="write it")
    assert SECRET not in str(refused.value)
    path.chmod(0o600)
    assert check_secret_file(path, setting="S", hint="write it") == path


class _Client:
    """Answers the probe like a Redis connection would."""

    def __init__(self, config: Exception | None, whoami: Exception | str) -> None:
        self._config, self._whoami = config, whoami

    def config_get(self, _name: str) -> dict[str, Any]:
        if self._config is not None:
            raise self._config
        return {"maxmemory": "0"}

    def acl_whoami(self) -> str:
        if isinstance(self._whoami, Exception):
            raise self._whoami
        return self._whoami


def test_the_probe_names_an_admin_user_and_spares_a_role(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CONFIG GET allowed: the user (``default`` on a Redis without ACLs) is warned about
    once, naming the fix; NOPERM: nothing; Redis unreachable: nothing."""
    caplog.set_level(logging.WARNING, logger="taskgate.redis")
    role = _Client(redis.exceptions.NoPermissionError("no"), "worker")
    assert admin_user(role) is None  # type: ignore[arg-type]
    assert warn_if_admin(role, "the worker") is False  # type: ignore[arg-type]
    down = _Client(redis.ConnectionError("down"), "x")
    assert warn_if_admin(down, "the worker") is False  # type: ignore[arg-type]
    assert caplog.records == []
    old = _Client(None, redis.exceptions.ResponseError("unknown command"))
    assert admin_user(old) == "default"  # type: ignore[arg-type]
    assert warn_if_admin(old, "the gateway") is True  # type: ignore[arg-type]
    [record] = caplog.records
    assert ADMIN_FIX in record.getMessage()
    assert "'default'" in record.getMessage()
