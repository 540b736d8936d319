"""Certificate lifetimes fit Mozilla's TLS profile, and `certs show` warns before expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from certs.authority import LEAVES, cert_pem, issue_leaf, key_pem, load_ca, write_pem
from certs.material import CertPaths, describe, expiry_warning, init_certs
from taskgate.cli.main import app

# sslyze's "intermediate" check (Mozilla profile v5.7) fails a leaf living longer than this.
MOZILLA_MAX_LIFESPAN_DAYS = 366


def _reissue(folder: Path, stem: str, *, not_before: dt.datetime, days: int) -> None:
    leaf = next(leaf for leaf in LEAVES if leaf.stem == stem)
    cert, key = issue_leaf(
        load_ca(folder),
        leaf.common_name,
        server=leaf.server,
        names=["localhost", "127.0.0.1"],  # a server leaf names its hosts (SANs)
        days=days,
        not_before=not_before,
    )
    write_pem(CertPaths(folder).key(stem), key_pem(key), private=True)
    write_pem(CertPaths(folder).cert(stem), cert_pem(cert), private=False)


def test_every_leaf_lives_at_most_mozillas_maximum(tmp_path: Path) -> None:
    """Each leaf certificate init writes is valid for at most 366 days, as sslyze requires."""
    folder = tmp_path / "certs"
    init_certs(folder)
    for leaf in LEAVES:
        cert = x509.load_pem_x509_certificate(CertPaths(folder).cert(leaf.stem).read_bytes())
        lifespan = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifespan.days <= MOZILLA_MAX_LIFESPAN_DAYS, leaf.stem


def test_expiry_warning_names_the_certificate_and_the_fix(tmp_path: Path) -> None:
    """No warning for a fresh certificate; one line within 30 days; EXPIRED once past."""
    folder = tmp_path / "certs"
    init_certs(folder)
    now = dt.datetime.now(dt.UTC)
    infos = {i.file.name: i for i in describe(folder, now=now)}
    assert expiry_warning(infos["https.pem"]) is None
    soon = {i.file.name: i for i in describe(folder, now=now + dt.timedelta(days=350))}
    assert not soon["https.pem"].expired
    assert "https.pem expires in" in str(expiry_warning(soon["https.pem"]))
    assert "taskgate certs rotate" in str(expiry_warning(soon["https.pem"]))
    late = {i.file.name: i for i in describe(folder, now=now + dt.timedelta(days=400))}
    assert late["https.pem"].expired
    assert "https.pem EXPIRED on" in str(expiry_warning(late["https.pem"]))
    assert expiry_warning(late["ca.pem"]) is None


def test_cli_show_warns_before_expiry_and_fails_once_expired(tmp_path: Path) -> None:
    """`certs show` exits 0 with a warning line for a leaf expiring within 30 days, and exits 1
    naming the leaf once one has expired."""
    state = tmp_path / "s"
    folder = state / "certs"
    init_certs(folder)
    now = dt.datetime.now(dt.UTC)
    runner = CliRunner()
    _reissue(folder, "redis", not_before=now - dt.timedelta(days=350), days=360)
    soon = runner.invoke(app, ["certs", "show", "--state-dir", str(state)])
    assert soon.exit_code == 0
    assert "warning: redis.pem expires in 9 days" in soon.stderr
    assert "https.pem" not in soon.stderr
    _reissue(folder, "worker-client", not_before=now - dt.timedelta(days=10), days=5)
    expired = runner.invoke(app, ["certs", "show", "--state-dir", str(state)])
    assert expired.exit_code == 1
    assert "warning: worker-client.pem EXPIRED on" in expired.stderr
    assert "warning: redis.pem expires in" in expired.stderr
    assert "https.pem" in expired.stdout  # every certificate is still listed
