"""A gateway with the web console on (sharing the session's Redis and worker), and an
HTTPS client that signs in through the console's own forms."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from certs.material import CertPaths
from security.keyexport import export_keys
from security.keyrotation import BUNDLE_ORDER
from security.keystore import KeyRing
from taskgate.procs import Child, free_port, start_child, taskgate_argv
from tests.conftest import register_log
from tests.integration.conftest import Gateway, _wait_for

__all__ = [
    "IDLE_TIMEOUT",
    "KeyHost",
    "console_gateway",
    "csrf_of",
    "key_host_gateway",
    "sign_in",
    "start_console_gateway",
]

IDLE_TIMEOUT = 4  # seconds: short, so a test can watch a session expire
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def start_console_gateway(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, name: str, **extra: str
) -> tuple[Gateway, Child]:
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

    _wait_for(child, ready, 60, "waiting for /readyz")
    return gateway, child


@pytest.fixture(scope="module")
def console_gateway(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, celery_worker: Child
) -> Iterator[Gateway]:
    """A second gateway process with TASKGATE_CONSOLE=true and a short idle timeout."""
    gateway, child = start_console_gateway(
        stack_env,
        session_dir,
        pki,
        "console-gateway",
        TASKGATE_CONSOLE_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
    )
    try:
        yield gateway
    finally:
        child.stop()


@dataclass(frozen=True)
class KeyHost:
    """A gateway that may rotate keys, its key host's full keys folder and role bundles."""

    gateway: Gateway
    keys: Path
    roles: Path

    def bundle(self, role: str) -> Path:
        return self.roles / role / "keys"


@pytest.fixture(scope="module")
def key_host_gateway(
    stack_env: dict[str, str],
    session_dir: Path,
    pki: CertPaths,
    keyring: KeyRing,
    celery_worker: Child,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KeyHost]:
    """A console gateway run on a key host of its own: a copy of the session's keys folder
    (so rotating there never touches the keys the session's processes load) and every
    role's bundle exported from it, named by TASKGATE_CONSOLE_KEY_HOST_DIR and _ROLES_DIR."""
    host = tmp_path_factory.mktemp("key-host")
    host.chmod(0o700)
    keys, roles = host / "keys", host / "roles"
    shutil.copytree(session_dir / "keys", keys)
    for role in BUNDLE_ORDER:
        export_keys(keys, roles / role / "keys", role=role)
    gateway, child = start_console_gateway(
        stack_env,
        session_dir,
        pki,
        "key-host-gateway",
        TASKGATE_CONSOLE_KEY_HOST_DIR=str(keys),
        TASKGATE_CONSOLE_ROLES_DIR=str(roles),
    )
    try:
        yield KeyHost(gateway=gateway, keys=keys, roles=roles)
    finally:
        child.stop()


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
