"""`taskgate flower`: Flower over HTTPS, behind basic auth, reading the TLS Redis as
``monitor`` (``taskgate.flower_app`` says what it can and cannot show).

The credential is generated on first start and kept in ``<state>/flower/flower.password``
(mode 0600); the user name is ``flower``. Workers publish task events only with
``TASKGATE_TASK_EVENTS=true``; without it Flower shows nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Self

import typer
from pydantic import Field, model_validator

from security.config import CommonSettings, env_name, load_settings
from security.errors import ConfigError
from security.logformat import configure_logging
from security.tls import check_private_key, check_readable, check_secret_file
from taskgate.devstack.redis_users import ensure_password

__all__ = ["FLOWER_USER", "FlowerSettings", "flower_command"]

FLOWER_USER = "flower"


class FlowerSettings(CommonSettings):
    """Settings of `taskgate flower` (``TASKGATE_FLOWER_*`` and the common ones)."""

    client_role: ClassVar[str] = "monitor-client"
    redis_role: ClassVar[str] = "monitor"

    flower_host: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=0, le=65535)
    # HTTPS: the gateway's certificate by default.
    flower_tls_cert: Path | None = None
    flower_tls_key: Path | None = None

    @model_validator(mode="after")
    def _https(self) -> Self:
        certs = self.state_dir / "certs"
        if self.flower_tls_cert is None:
            self.__dict__["flower_tls_cert"] = certs / "https.pem"
        if self.flower_tls_key is None:
            self.__dict__["flower_tls_key"] = certs / "https-key.pem"
        check_readable(
            self.flower_tls_cert, setting=env_name("flower_tls_cert"), what="HTTPS certificate"
        )
        check_private_key(self.flower_tls_key, setting=env_name("flower_tls_key"))
        return self

    def credential_file(self) -> Path:
        """The basic-auth password file (created 0600 if missing)."""
        return ensure_password(self.state_dir / "flower", FLOWER_USER)


def flower_command(
    port: Annotated[int | None, typer.Option("--port", help="HTTPS port.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
) -> None:
    """Run Flower (extra: taskgate[flower]) over HTTPS, behind basic auth, read-only."""
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["flower_port"] = port
    if host is not None:
        overrides["flower_host"] = host
    try:
        from taskgate.flower_app import build_flower, monitor_celery
    except ImportError:
        typer.echo("taskgate flower: refused: pip install 'taskgate[flower]'", err=True)
        raise typer.Exit(2) from None
    try:
        settings = load_settings(FlowerSettings, **overrides)
        configure_logging(settings.log_format)
        path = check_secret_file(
            settings.credential_file(),
            setting="the Flower password file",
            hint="chmod 600 it",
        )
        password = path.read_text().strip()
        flower = build_flower(
            monitor_celery(settings.redis),
            host=settings.flower_host,
            port=settings.flower_port,
            credential=f"{FLOWER_USER}:{password}",
            tls_cert=Path(str(settings.flower_tls_cert)),
            tls_key=Path(str(settings.flower_tls_key)),
        )
    except ConfigError as exc:
        typer.echo(f"taskgate flower: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    bound = flower.start_http_server()
    typer.echo(
        f"taskgate flower: https://{settings.flower_host}:{bound}/ (user {FLOWER_USER},"
        f" password in {path})",
        err=True,
    )
    try:
        flower.start()
    except KeyboardInterrupt:
        pass
    finally:
        flower.stop()
