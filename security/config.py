"""Settings every taskgate process shares: where Redis is and how to reach it over mTLS.

Each process kind subclasses :class:`CommonSettings` (``gateway.settings``,
``workers.settings``) and builds it inside ``create_app`` / ``create_celery`` or the CLI,
never at import time. Construction *is* the start-up check: an unsafe value raises
:class:`~security.errors.ConfigError` naming the variable and the fix; the CLI prints
that one line and exits 2.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from security.errors import ConfigError, KeyRingError
from security.keystore import KeyRing, Role, load_keys, load_keys_from_env, load_keys_from_files
from security.sentry_scrub import check_dsn
from security.tls import (
    RedisTLS,
    check_private_key,
    check_readable,
    check_redis_url,
    check_secret_file,
)

__all__ = ["ENV_PREFIX", "CommonSettings", "env_name", "load_settings"]

ENV_PREFIX = "TASKGATE_"


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


class CommonSettings(BaseSettings):
    """Redis over mTLS plus the state folder. Paths default to ``<state_dir>/certs``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # Which client certificate a process kind presents to Redis by default, and which
    # Redis ACL user it logs in as (``taskgate redis acl`` renders the users).
    client_role: ClassVar[str] = "gateway-client"
    redis_role: ClassVar[str] = "gateway"

    state_dir: Path = Path(".taskgate")
    redis_url: str | None = None
    redis_ssl_cert_reqs: str = "required"
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keys_dir: Path | None = None
    keys_files_dir: Path | None = None
    redis_username: str | None = None
    # The role's password: TASKGATE_REDIS_PASSWORD, else this file (mode 0600), by default
    # <state_dir>/redis-users/<username>.password. Never a command-line argument.
    redis_password_file: Path | None = None
    redis_password: SecretStr | None = None
    # How often each process moves its metric counts to Redis (``workers.contract.metrics``).
    metrics_flush_interval: float = Field(default=1.0, gt=0, le=60)
    # Log lines as JSON objects or plain text; auto: text on a terminal, else JSON
    # (security.logformat).
    log_format: Literal["json", "text", "auto"] = "auto"
    # Report errors to Sentry (optional extra ``taskgate[sentry]``); unset: sentry-sdk is
    # never imported. A secret: it holds the project's key.
    sentry_dsn: SecretStr | None = None

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Self:
        certs = self.state_dir / "certs"
        # Fill path defaults from the state folder (the model is frozen: set via __dict__).
        defaults = {
            "ca_file": certs / "ca.pem",
            "client_cert": certs / f"{self.client_role}.pem",
            "client_key": certs / f"{self.client_role}-key.pem",
            "keys_dir": self.state_dir / "keys",
            "redis_username": self.redis_role,
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                self.__dict__[name] = value
        check_redis_url(self.redis_url, setting=env_name("redis_url"))
        if self.redis_ssl_cert_reqs.strip().lower() not in {"required", "cert_required"}:
            raise ConfigError(
                env_name("redis_ssl_cert_reqs"),
                f"{self.redis_ssl_cert_reqs!r} would not verify the Redis certificate",
                "remove it or set it to 'required'",
            )
        check_readable(self.ca_file, setting=env_name("ca_file"), what="CA certificate (PEM)")
        check_readable(
            self.client_cert, setting=env_name("client_cert"), what="client certificate (PEM)"
        )
        check_private_key(self.client_key, setting=env_name("client_key"))
        username = str(self.redis_username)
        if not username or any(c.isspace() for c in username):
            raise ConfigError(env_name("redis_username"), "is empty or has spaces", "fix it")
        if self.redis_password_file is None:
            path = self.state_dir / "redis-users" / f"{username}.password"
            self.__dict__["redis_password_file"] = path
        if self.sentry_dsn is not None:
            check_dsn(self.sentry_dsn.get_secret_value(), setting=env_name("sentry_dsn"))
        return self

    def _redis_password(self) -> SecretStr:
        """The ACL user's password from the environment or its 0600 file (fail closed).

        Read when the connection details are first asked for (:attr:`redis`), so that the
        CLI reports missing keys or certificates first.
        """
        if self.redis_password is not None:
            if not self.redis_password.get_secret_value():
                raise ConfigError(env_name("redis_password"), "is empty", "set the password")
            return self.redis_password
        path = check_secret_file(
            self.redis_password_file,
            setting=env_name("redis_password_file"),
            hint="run `taskgate up` once, or write the Redis user's password there (mode 0600)",
        )
        password = path.read_text().strip()
        if not password:
            raise ConfigError(
                env_name("redis_password_file"), f"{path} is empty", "write the password there"
            )
        return SecretStr(password)

    def key_ring(self, role: Role) -> KeyRing:
        """Load this process's keys; any problem is a :class:`ConfigError` (exit 2).

        Source, first that applies: ``TASKGATE_KEY_*`` environment variables,
        ``TASKGATE_KEYS_FILES_DIR`` (Docker/Kubernetes secrets), ``TASKGATE_KEYS_DIR``.
        """
        try:
            if any(name.startswith("TASKGATE_KEY_") for name in os.environ):
                return load_keys_from_env(os.environ, role=role)
            if self.keys_files_dir is not None:
                return load_keys_from_files(self.keys_files_dir, role=role)
            if self.keys_dir is None:  # pragma: no cover - the validator sets it
                raise KeyRingError("no keys folder", reason="no_key")
            return load_keys(self.keys_dir, role=role)
        except KeyRingError as exc:
            setting = (
                "TASKGATE_KEY_*"
                if any(name.startswith("TASKGATE_KEY_") for name in os.environ)
                else env_name("keys_files_dir" if self.keys_files_dir else "keys_dir")
            )
            raise ConfigError(
                setting, exc.message, "run `taskgate keys init` or fix the key material"
            ) from None

    @functools.cached_property
    def redis(self) -> RedisTLS:
        """The mTLS connection details and the ACL user's credentials, validated."""
        if self.redis_url is None or self.ca_file is None:  # pragma: no cover - validator ran
            raise ConfigError(env_name("redis_url"), "is not set", "set it")
        if self.client_cert is None or self.client_key is None:  # pragma: no cover
            raise ConfigError(env_name("client_cert"), "is not set", "set it")
        return RedisTLS(
            self.redis_url,
            self.ca_file,
            self.client_cert,
            self.client_key,
            username=self.redis_username,
            password=self._redis_password(),
        )


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment; any refusal becomes one :class:`ConfigError`.

    pydantic's own validation errors (a port that is not a number, say) are folded
    into the same one-line form, naming the environment variable.
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise ConfigError(env_name(field), first["msg"], "correct the value") from None
