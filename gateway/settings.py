"""Gateway process settings (``TASKGATE_*``), built in the CLI or by tests, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, model_validator

from security.config import CommonSettings, env_name
from security.tls import check_private_key, check_readable

__all__ = ["GatewaySettings"]


class GatewaySettings(CommonSettings):
    """Settings of the HTTPS gateway."""

    client_role: ClassVar[str] = "gateway-client"

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Readiness: how long to wait for a worker to answer system.ping, and how long a
    # success is trusted before the next probe sends another ping.
    ready_timeout: float = Field(default=3.0, gt=0, le=30)
    ready_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    docs_enabled: bool = False
    # How long a sealed task message stays valid: queueing plus every retry must fit.
    envelope_ttl: int = Field(default=86_400, ge=60, le=7 * 86_400)

    @model_validator(mode="after")
    def _check_https_material(self) -> Self:
        certs = self.state_dir / "certs"
        if self.tls_cert is None:
            self.__dict__["tls_cert"] = certs / "https.pem"
        if self.tls_key is None:
            self.__dict__["tls_key"] = certs / "https-key.pem"
        check_readable(self.tls_cert, setting=env_name("tls_cert"), what="HTTPS certificate (PEM)")
        check_private_key(self.tls_key, setting=env_name("tls_key"))
        return self
