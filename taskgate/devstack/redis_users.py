"""The Redis ACL users of a local stack: their passwords on disk and the ACL file.

Each role's password is generated once into ``<state_dir>/redis-users/<role>.password``
(folder 0700, file 0600) and read from there by the processes of that role
(``security.config``). Redis only ever sees the SHA-256 of a password (``#<hex>`` in the
ACL file, itself 0600 in Redis's data folder).

A test harness may add one more user, :data:`HARNESS`, with every right (flushing the
database between tests); ``taskgate up`` and production never do.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from certs.material import CertPaths
from workers.contract.acl import render_acl
from workers.contract.keys import ROLES, Role

__all__ = [
    "HARNESS",
    "USERS_DIR",
    "acl_lines",
    "describe_users",
    "ensure_password",
    "password_path",
    "password_sha256",
    "write_private",
]

USERS_DIR: Final = "redis-users"
HARNESS: Final = "harness"


def password_path(folder: Path, user: str) -> Path:
    """Where ``user``'s password lives inside the users folder."""
    return folder / f"{user}.password"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600 from the first byte (its folder made if
    missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_password(folder: Path, user: str) -> Path:
    """``user``'s password file, created with a fresh random password if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = password_path(folder, user)
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32) + "\n")
    return path


def password_sha256(path: Path) -> str:
    """The hex SHA-256 of the password in ``path`` (what an ACL file holds)."""
    return hashlib.sha256(path.read_text().strip().encode()).hexdigest()


def describe_users(certs: CertPaths, folder: Path) -> dict[str, dict[str, str]]:
    """Per role: its Redis ACL user, client certificate, key and password file."""
    return {
        role: {
            "username": role,
            "client_cert": str(certs.cert(f"{role}-client").resolve()),
            "client_key": str(certs.key(f"{role}-client").resolve()),
            "password_file": str(password_path(folder, role)),
        }
        for role in ROLES
    }


def acl_lines(folder: Path, *, queues: Iterable[str] = (), harness: bool = False) -> list[str]:
    """The ACL lines for every role, creating missing passwords in ``folder``."""
    hashes: dict[Role, str | None] = {
        role: password_sha256(ensure_password(folder, role)) for role in ROLES
    }
    lines = render_acl(hashes, queues=queues)
    if harness:
        digest = password_sha256(ensure_password(folder, HARNESS))
        lines.append(f"user {HARNESS} reset on #{digest} ~* &* +@all")
    return lines
