"""The local CA and certificates: idempotent init, rotation, what `show` reports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from certs.authority import LEAF_DAYS, issue_leaf, load_ca
from certs.material import CertPaths, describe, init_certs, rotate_leaves
from taskgate.cli.main import app


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_init_twice_leaves_the_same_files(tmp_path: Path) -> None:
    """A second init writes nothing and every file is byte-for-byte unchanged."""
    folder = tmp_path / "certs"
    assert init_certs(folder)
    before = _snapshot(folder)
    assert init_certs(folder) == []
    assert _snapshot(folder) == before


def test_init_force_replaces_everything(tmp_path: Path) -> None:
    """--force makes a new CA and new leaves."""
    folder = tmp_path / "certs"
    init_certs(folder)
    before = _snapshot(folder)
    init_certs(folder, force=True)
    after = _snapshot(folder)
    assert all(before[name] != after[name] for name in before)


def test_private_keys_are_0600_and_folder_0700(tmp_path: Path) -> None:
    """Every private key is readable by its owner only."""
    folder = tmp_path / "certs"
    init_certs(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    keys = list(folder.glob("*-key.pem"))
    assert len(keys) == 7
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)


def test_server_certificates_carry_loopback_and_extra_names(tmp_path: Path) -> None:
    """Redis and HTTPS certificates name localhost, 127.0.0.1, ::1 and configured names."""
    folder = tmp_path / "certs"
    init_certs(folder, names=["redis.internal"])
    for stem in ("redis", "https"):
        cert = x509.load_pem_x509_certificate(CertPaths(folder).cert(stem).read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        ips = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        assert {"localhost", "redis.internal"} <= names
        assert {"127.0.0.1", "::1"} <= ips
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_client_certificates_are_for_client_auth_only(tmp_path: Path) -> None:
    """Gateway, worker and operator client certificates carry clientAuth, not serverAuth."""
    folder = tmp_path / "certs"
    init_certs(folder)
    for stem in ("gateway-client", "worker-client", "operator-client"):
        cert = x509.load_pem_x509_certificate(CertPaths(folder).cert(stem).read_bytes())
        eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert eku == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_rotate_issues_new_leaves_from_the_same_ca(tmp_path: Path) -> None:
    """Rotation replaces leaf certificates and keys; the CA stays."""
    folder = tmp_path / "certs"
    init_certs(folder)
    before = _snapshot(folder)
    rotate_leaves(folder)
    after = _snapshot(folder)
    assert before["ca.pem"] == after["ca.pem"]
    assert before["ca-key.pem"] == after["ca-key.pem"]
    assert before["redis.pem"] != after["redis.pem"]
    assert before["redis-key.pem"] != after["redis-key.pem"]


def test_describe_reports_expiry_and_days_left(tmp_path: Path) -> None:
    """`show` data: each certificate with its expiry and days left."""
    folder = tmp_path / "certs"
    init_certs(folder)
    now = dt.datetime.now(dt.UTC)
    infos = {i.file.name: i for i in describe(folder, now=now)}
    assert set(infos) == {
        "ca.pem",
        "redis.pem",
        "gateway-client.pem",
        "worker-client.pem",
        "operator-client.pem",
        "monitor-client.pem",
        "https.pem",
    }
    assert LEAF_DAYS - 2 <= infos["redis.pem"].days_left <= LEAF_DAYS
    assert infos["ca.pem"].days_left > 3000
    assert len(infos["https.pem"].sha256.split(":")) == 32


def test_cli_show_prints_expiry_and_init_is_idempotent(tmp_path: Path) -> None:
    """`certs init` twice says the material is kept; `certs show` prints expiry lines."""
    runner = CliRunner()
    state = str(tmp_path / "s")
    first = runner.invoke(app, ["certs", "init", "--state-dir", state])
    second = runner.invoke(app, ["certs", "init", "--state-dir", state])
    shown = runner.invoke(app, ["certs", "show", "--state-dir", state])
    assert first.exit_code == second.exit_code == shown.exit_code == 0
    assert "already present" in second.output
    assert "days left" in shown.output
    assert "expires" in shown.output


def test_cli_show_and_rotate_without_material_fail(tmp_path: Path) -> None:
    """show and rotate on an empty folder exit 1 and say to run init."""
    runner = CliRunner()
    state = str(tmp_path / "empty")
    assert runner.invoke(app, ["certs", "show", "--state-dir", state]).exit_code == 1
    rotated = runner.invoke(app, ["certs", "rotate", "--state-dir", state])
    assert rotated.exit_code == 1
    assert "certs init" in rotated.output


def test_a_server_leaf_without_names_is_refused(tmp_path: Path) -> None:
    """A server certificate nobody could verify a host name against is never issued."""
    init_certs(tmp_path / "certs")
    with pytest.raises(ValueError, match="host name"):
        issue_leaf(load_ca(tmp_path / "certs"), "taskgate redis", server=True)
