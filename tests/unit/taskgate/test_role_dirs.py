"""Per-role state folders: own certificates, own key bundle, nothing a role must not hold."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from certs.material import init_certs
from security.errors import ConfigError
from security.keystore import init_keys, load_keys
from taskgate.devstack.role_dirs import RoleDirError, prepare_role_dir, role_dir


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("state")
    init_certs(folder / "certs")
    init_keys(folder / "keys")
    return folder


def _names(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_worker_folder_holds_its_certificates_and_bundle_only(state: Path) -> None:
    """roles/worker has the CA certificate (no CA key), the worker client pair and the
    worker bundle, all owner-only; it loads as a worker's state folder would."""
    folder = prepare_role_dir(state, "worker")
    assert folder == role_dir(state, "worker")
    names = _names(folder)
    certs = {n for n in names if n.startswith("certs/")}
    assert certs == {"certs/ca.pem", "certs/worker-client.pem", "certs/worker-client-key.pem"}
    assert not any(n.startswith("redis-users") for n in names)
    for path in (folder, folder / "certs", folder / "keys"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "certs" / "worker-client-key.pem").stat().st_mode) == 0o600
    ring = load_keys(folder / "keys", role="worker")
    assert ring.signing.current().private is None
    assert not any(
        n.startswith(("keys/token-", "keys/state-", "keys/audit-gateway")) for n in names
    )


def test_gateway_folder_adds_the_https_pair(state: Path) -> None:
    """roles/gateway has the gateway client and HTTPS pairs and a gateway bundle."""
    folder = prepare_role_dir(state, "gateway")
    certs = {n for n in _names(folder) if n.startswith("certs/")}
    assert {"certs/https.pem", "certs/https-key.pem", "certs/gateway-client-key.pem"} <= certs
    assert "certs/ca-key.pem" not in certs
    assert load_keys(folder / "keys", role="gateway").signing.current().private is not None


def test_the_roles_redis_password_is_copied_when_present(state: Path) -> None:
    """<state>/redis-users/<role>.password reaches that role's folder (0600), no other."""
    users = state / "redis-users"
    users.mkdir(mode=0o700, exist_ok=True)
    for role in ("worker", "gateway"):
        (users / f"{role}.password").write_text(f"{role}-pw\n")
        (users / f"{role}.password").chmod(0o600)
    try:
        folder = prepare_role_dir(state, "worker")
        copied = folder / "redis-users" / "worker.password"
        assert copied.read_text() == "worker-pw\n"
        assert stat.S_IMODE(copied.stat().st_mode) == 0o600
        assert not (folder / "redis-users" / "gateway.password").exists()
    finally:
        for path in users.iterdir():
            path.unlink()


def test_an_exposed_client_key_is_refused_not_copied(state: Path) -> None:
    """A client key group or others may read stops the build naming TASKGATE_CLIENT_KEY."""
    key = state / "certs" / "worker-client-key.pem"
    key.chmod(0o640)
    try:
        with pytest.raises(ConfigError) as info:
            prepare_role_dir(state, "worker")
        assert "TASKGATE_CLIENT_KEY" in str(info.value)
    finally:
        key.chmod(0o600)


def test_a_missing_certificate_is_refused(state: Path) -> None:
    """A role whose certificate does not exist (here the operator's, removed) is refused."""
    (state / "certs" / "operator-client.pem").unlink()
    with pytest.raises(RoleDirError):
        prepare_role_dir(state, "operator")
