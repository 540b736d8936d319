"""A running gateway and its HTTPS client, a registered API client, and another gateway
started on demand with an environment of the test's choosing."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.material import CertPaths
from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from tests.support.logs import register_log

__all__ = ["ApiClient", "Gateway", "extra_gateway"]


@dataclass
class Gateway:
    """A running gateway subprocess and an HTTPS client that trusts the test CA."""

    child: Child
    url: str
    ca_file: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=10.0, **kwargs)


@dataclass
class ApiClient:
    """A registered client with its credentials, able to fetch tokens from the gateway."""

    client_id: str
    secret: str
    gateway: Gateway

    def token(self, scope: str | None = None) -> str:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
        }
        if scope:
            data["scope"] = scope
        with self.gateway.client() as http:
            response = http.post("/v1/token", data=data)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def http(self, scope: str | None = None) -> httpx.Client:
        return self.gateway.client(headers={"Authorization": f"Bearer {self.token(scope)}"})


@contextmanager
def extra_gateway(
    name: str,
    env: Mapping[str, str],
    session_dir: Path,
    pki: CertPaths,
    *,
    workers: int = 1,
    ready_path: str = "/healthz",
    timeout: float = 60,
    log_level: str = "warning",
) -> Iterator[Gateway]:
    """Start another ``taskgate serve`` on a free port with ``env``; stop it on exit."""
    port = free_port()
    argv = ["serve", "--port", str(port), "--log-level", log_level]
    if workers > 1:
        argv += ["--workers", str(workers)]
    child = start_child(
        name,
        taskgate_argv(*argv),
        log_path=session_dir / "logs" / f"{name}-{port}.log",
        env=dict(env),
    )
    register_log(child)
    gateway = Gateway(child=child, url=f"https://localhost:{port}", ca_file=pki.ca)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if not child.alive():
                pytest.fail(f"{name} exited at start:\n{child.log_tail()}", pytrace=False)
            try:
                with gateway.client() as http:
                    if http.get(ready_path).status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name} not ready after {timeout}s:\n{child.log_tail()}", pytrace=False
                )
            time.sleep(0.2)
        yield gateway
    finally:
        child.stop()
