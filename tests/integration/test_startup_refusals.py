"""`taskgate serve`, `worker` and `up` refuse unsafe settings: exit 2, one line naming it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certs.material import CertPaths
from security.keystore import KeyRing
from taskgate.cli.main import app
from taskgate.devstack.procs import taskgate_argv

pytestmark = pytest.mark.integration

COMMANDS = [["serve"], ["worker"], ["up", "--port", "0"]]


@pytest.fixture
def env(pki: CertPaths, keyring: KeyRing, session_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A safe configuration pointing at a copy of the test PKI and keys (to break them)."""
    state = tmp_path / "state"
    (state / "certs").mkdir(parents=True)
    shutil.copytree(session_dir / "keys", state / "keys")
    for file in pki.all_files():
        target = state / "certs" / file.name
        target.write_bytes(file.read_bytes())
        target.chmod(0o600)
    return {
        "TASKGATE_STATE_DIR": str(state),
        "TASKGATE_REDIS_URL": "rediss://localhost:6390/0",
    }


def _invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    clean = {k: None for k in os.environ if k.startswith("TASKGATE_")}
    result = CliRunner().invoke(app, args, env={**clean, **env})
    return result.exit_code, result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_plain_redis_url_is_refused(command: list[str], env: dict[str, str]) -> None:
    """A redis:// URL (plain TCP) stops start-up with exit 2 naming TASKGATE_REDIS_URL."""
    code, out = _invoke(command, env | {"TASKGATE_REDIS_URL": "redis://localhost:6379/0"})
    assert code == 2
    assert "TASKGATE_REDIS_URL" in out
    assert "rediss://" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_cert_reqs_none_in_url_is_refused(command: list[str], env: dict[str, str]) -> None:
    """ssl_cert_reqs=none in the URL is refused with exit 2."""
    code, out = _invoke(
        command, env | {"TASKGATE_REDIS_URL": "rediss://localhost:6390/0?ssl_cert_reqs=none"}
    )
    assert code == 2
    assert "TASKGATE_REDIS_URL" in out
    assert "ssl_cert_reqs" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_cert_reqs_setting_other_than_required_is_refused(
    command: list[str], env: dict[str, str]
) -> None:
    """TASKGATE_REDIS_SSL_CERT_REQS=none is refused with exit 2 naming the variable."""
    code, out = _invoke(command, env | {"TASKGATE_REDIS_SSL_CERT_REQS": "none"})
    assert code == 2
    assert "TASKGATE_REDIS_SSL_CERT_REQS" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_missing_ca_is_refused(command: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """A CA file that does not exist is refused with exit 2 naming TASKGATE_CA_FILE."""
    code, out = _invoke(command, env | {"TASKGATE_CA_FILE": str(tmp_path / "nope.pem")})
    assert code == 2
    assert "TASKGATE_CA_FILE" in out
    assert "does not exist" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_group_readable_client_key_is_refused(command: list[str], env: dict[str, str]) -> None:
    """A client key readable by the group is refused with exit 2 and the chmod fix."""
    certs = Path(env["TASKGATE_STATE_DIR"]) / "certs"
    for key in certs.glob("*-client-key.pem"):
        key.chmod(0o640)
    code, out = _invoke(command, env)
    assert code == 2
    assert "TASKGATE_CLIENT_KEY" in out
    assert "chmod 600" in out


def test_group_readable_https_key_is_refused_by_serve(env: dict[str, str]) -> None:
    """The gateway's HTTPS key gets the same check (TASKGATE_TLS_KEY)."""
    (Path(env["TASKGATE_STATE_DIR"]) / "certs" / "https-key.pem").chmod(0o644)
    code, out = _invoke(["serve"], env)
    assert code == 2
    assert "TASKGATE_TLS_KEY" in out


def test_refusal_from_the_real_console_script_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    """The installed entry point exits 2 with a single stderr line, no traceback."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    full |= env | {"TASKGATE_REDIS_URL": "redis://localhost:6379/0"}
    proc = subprocess.run(
        taskgate_argv("worker"), env=full, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TASKGATE_REDIS_URL" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [["serve"], ["worker"]], ids=lambda c: c[0])
def test_missing_keys_are_refused(command: list[str], env: dict[str, str]) -> None:
    """Without a key ring, gateway and worker refuse to start and say how to make one."""
    shutil.rmtree(Path(env["TASKGATE_STATE_DIR"]) / "keys")
    code, out = _invoke(command, env)
    assert code == 2
    assert "TASKGATE_KEYS_DIR" in out
    assert "keys init" in out


@pytest.mark.parametrize("command", [["serve"], ["worker"]], ids=lambda c: c[0])
def test_key_file_readable_by_others_is_refused(command: list[str], env: dict[str, str]) -> None:
    """A key file readable by group or others stops start-up with exit 2."""
    key = next((Path(env["TASKGATE_STATE_DIR"]) / "keys").glob("broker-*.key"))
    key.chmod(0o644)
    code, out = _invoke(command, env)
    assert code == 2
    assert "TASKGATE_KEYS_DIR" in out


SERVE_WORKER = [["serve"], ["worker"]]


@pytest.mark.parametrize("command", SERVE_WORKER, ids=lambda c: c[0])
def test_missing_redis_password_is_refused(command: list[str], env: dict[str, str]) -> None:
    """No password file for the role's Redis user: exit 2 naming the setting and the file."""
    code, out = _invoke(command, env)
    assert code == 2
    assert "TASKGATE_REDIS_PASSWORD_FILE" in out
    assert f"redis-users/{'gateway' if command == ['serve'] else 'worker'}.password" in out


@pytest.mark.parametrize("command", SERVE_WORKER, ids=lambda c: c[0])
def test_redis_password_file_readable_by_others_is_refused(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """A group- or world-readable Redis password file is refused like a private key, and the
    refusal never shows the password."""
    password = tmp_path / "role.password"
    password.write_text("s3cret-redis-password\n")
    password.chmod(0o640)
    code, out = _invoke(command, env | {"TASKGATE_REDIS_PASSWORD_FILE": str(password)})
    assert code == 2
    assert "TASKGATE_REDIS_PASSWORD_FILE" in out
    assert "chmod 600" in out
    assert "s3cret" not in out
