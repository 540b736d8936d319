"""A gateway with the web console on (sharing the session's Redis and worker), and an
HTTPS client that signs in through the console's own forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from certs.material import CertPaths
from taskgate.devstack.procs import Child, free_port, start_child, taskgate_argv
from tests.support.gateways import Gateway
from tests.support.logs import register_log
from tests.support.processes import wait_child

__all__ = ["IDLE_TIMEOUT", "KeyHost", "csrf_of", "sign_in", "start_console_gateway"]

IDLE_TIMEOUT = 4  # seconds: short, so a test can watch a session expire
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def start_console_gateway(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, name: str, **extra: str
) -> tuple[Gateway, Child]:
    """Start a gateway named ``name`` with the console on (``extra`` settings added) and wait
    until it is ready; the caller stops the child."""
    port = free_port()
    env = stack_env | {"TASKGATE_CONSOLE": "true"} | extra
    child = start_child(
        name,
        taskgate_argv("serve", "--port", str(port), "--log-level", "warning"),
        log_path=session_dir / "logs" / f"{name}.log",
        env=env,
    )
    register_log(child)
    gateway = Gateway(child=child, url=f"https://localhost:{port}", ca_file=pki.ca)

    def ready() -> bool:
        try:
            with gateway.client() as client:
                return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_child(child, ready, 60, "waiting for /readyz")
    return gateway, child


@dataclass(frozen=True)
class KeyHost:
    """A gateway that may rotate keys, its key host's full keys folder and role bundles."""

    gateway: Gateway
    keys: Path
    roles: Path

    def bundle(self, role: str) -> Path:
        return self.roles / role / "keys"


def csrf_of(html: str) -> str:
    """The first CSRF token in a page's forms."""
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(gateway: Gateway, credential: str) -> tuple[httpx.Client, str]:
    """An HTTPS client signed in to the console, and the session's CSRF token."""
    http = gateway.client()
    form = http.get("/console/login")
    assert form.status_code == 200
    done = http.post("/console/login", data={"csrf": csrf_of(form.text), "credential": credential})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/overview"
    page = http.get("/console/overview")
    assert page.status_code == 200
    return http, csrf_of(page.text)
