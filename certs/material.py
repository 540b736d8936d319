"""The certificate folder as a whole: init (idempotent), rotate, describe."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certs.authority import (
    LEAVES,
    cert_pem,
    default_names,
    issue_leaf,
    key_pem,
    load_ca,
    new_ca,
    write_pem,
)

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "CertInfo",
    "CertPaths",
    "describe",
    "expiry_warning",
    "init_certs",
    "rotate_leaves",
]

# `taskgate certs show` warns this many days before a certificate expires.
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertPaths:
    """Where each piece of material lives inside a certificate folder."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    def cert(self, stem: str) -> Path:
        return self.folder / f"{stem}.pem"

    def key(self, stem: str) -> Path:
        return self.folder / f"{stem}-key.pem"

    def all_files(self) -> list[Path]:
        files = [self.ca, self.ca_key]
        for leaf in LEAVES:
            files += [self.cert(leaf.stem), self.key(leaf.stem)]
        return files


def _issue_all(paths: CertPaths, names: list[str], *, only_missing: bool) -> list[Path]:
    ca = load_ca(paths.folder)
    written: list[Path] = []
    for leaf in LEAVES:
        cert_path, key_path = paths.cert(leaf.stem), paths.key(leaf.stem)
        if only_missing and cert_path.exists() and key_path.exists():
            continue
        cert, key = issue_leaf(ca, leaf.common_name, server=leaf.server, names=names)
        write_pem(key_path, key_pem(key), private=True)
        write_pem(cert_path, cert_pem(cert), private=False)
        written += [cert_path, key_path]
    return written


def init_certs(folder: Path, *, names: Iterable[str] = (), force: bool = False) -> list[Path]:
    """Create the CA and every leaf that is missing; keep what exists unless ``force``.

    Returns the files written (empty when everything was already there).
    """
    paths = CertPaths(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    written: list[Path] = []
    if force or not (paths.ca.exists() and paths.ca_key.exists()):
        ca = new_ca()
        write_pem(paths.ca_key, key_pem(ca.key), private=True)
        write_pem(paths.ca, cert_pem(ca.cert), private=False)
        written += [paths.ca, paths.ca_key]
        force = True  # leaves from an old CA would no longer verify
    return written + _issue_all(paths, default_names(names), only_missing=not force)


def rotate_leaves(folder: Path, *, names: Iterable[str] = ()) -> list[Path]:
    """Issue new leaf certificates (fresh keys) from the existing CA."""
    paths = CertPaths(folder)
    if not (paths.ca.exists() and paths.ca_key.exists()):
        raise FileNotFoundError(f"no CA in {folder}; run `taskgate certs init` first")
    return _issue_all(paths, default_names(names), only_missing=False)


@dataclass(frozen=True)
class CertInfo:
    """What `taskgate certs show` prints for one certificate."""

    file: Path
    subject: str
    issuer: str
    sans: list[str]
    not_after: dt.datetime
    days_left: int  # whole days, rounded down: negative once ``not_after`` has passed
    sha256: str

    @property
    def expired(self) -> bool:
        return self.days_left < 0


def describe(folder: Path, *, now: dt.datetime | None = None) -> list[CertInfo]:
    """Describe every certificate present in ``folder`` (CA first)."""
    paths = CertPaths(folder)
    moment = now or dt.datetime.now(dt.UTC)
    infos: list[CertInfo] = []
    for file in [paths.ca] + [paths.cert(leaf.stem) for leaf in LEAVES]:
        if not file.exists():
            continue
        cert = x509.load_pem_x509_certificate(file.read_bytes())
        try:
            san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = [str(v) for v in san_ext.value.get_values_for_type(x509.DNSName)]
            sans += [str(v) for v in san_ext.value.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            sans = []
        not_after = cert.not_valid_after_utc
        infos.append(
            CertInfo(
                file=file,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                sans=sans,
                not_after=not_after,
                days_left=(not_after - moment).days,
                sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
            )
        )
    return infos


def expiry_warning(info: CertInfo, *, within: int = EXPIRY_WARNING_DAYS) -> str | None:
    """One line for a certificate that has expired or expires within ``within`` days, with
    the command that renews it; ``None`` when it has longer to live."""
    if info.days_left > within:
        return None
    when = f"{info.not_after:%Y-%m-%d %H:%M:%SZ}"
    state = f"EXPIRED on {when}" if info.expired else f"expires in {info.days_left} days ({when})"
    if info.file.name == "ca.pem":
        fix = "run `taskgate certs init --force` (a new CA and every leaf; restart everything)"
    else:
        fix = "run `taskgate certs rotate` and restart the processes"
    return f"{info.file.name} {state}: {fix}"
