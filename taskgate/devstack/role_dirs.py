"""Per-role state folders: each process of `taskgate up` reads its own folder only.

``<state>/roles/<role>/`` is laid out like a state folder, so a process given it as
``TASKGATE_STATE_DIR`` finds everything at the usual defaults (:mod:`security.config`)::

    roles/<role>/                   0700
      certs/                        0700  ca.pem (no CA key), <role>-client.pem + -key.pem
                                          (the gateway adds https.pem + https-key.pem)
      keys/                         0700  the role's key bundle (`taskgate keys export`)
      redis-users/<role>.password   0600  copied when <state>/redis-users/ has one

The folder is rebuilt from the full state folder (``certs/``, ``keys/``, ``redis-users/``)
on every call, so a rotation there reaches the role at the next start and nothing stale
stays behind. What it never holds, for a worker: the CA key, the signing private key, the
token or state keys, another role's audit key, the admin token or its hash.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from certs.authority import write_pem
from certs.material import CertPaths
from security.config import env_name
from security.keyexport import export_keys
from security.keys import Role
from security.tls import check_private_key

__all__ = ["ROLE_CERTS", "RoleDirError", "prepare_role_dir", "role_dir"]

#: The certificate stems each role presents (``<stem>.pem`` and ``<stem>-key.pem``).
ROLE_CERTS: Final[dict[Role, tuple[str, ...]]] = {
    "worker": ("worker-client",),
    "gateway": ("gateway-client", "https"),
    "operator": ("operator-client",),
}


class RoleDirError(RuntimeError):
    """A role folder could not be built (missing certificate)."""


def role_dir(state_dir: Path, role: Role) -> Path:
    """Where ``role``'s own state folder lives inside ``state_dir``."""
    return state_dir / "roles" / role


def prepare_role_dir(state_dir: Path, role: Role) -> Path:
    """Build (or rebuild) ``role``'s folder from the full state folder; return it.

    Raises :class:`RoleDirError` if a certificate the role needs is missing,
    :class:`~security.errors.ConfigError` if a private key or password file to copy is open
    to group or others (never copied into a tighter file: that would hide the exposure), and
    :class:`~security.errors.KeyRingError` if the keys folder lacks what the role loads.
    """
    folder = role_dir(state_dir, role)
    for path in (folder.parent, folder):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    _copy_certs(CertPaths(state_dir / "certs"), folder / "certs", role)
    export_keys(state_dir / "keys", folder / "keys", role=role)
    _copy_redis_password(state_dir, folder, role)
    return folder


def _copy_certs(source: CertPaths, dest: Path, role: Role) -> None:
    shutil.rmtree(dest, ignore_errors=True)  # rebuilt whole: no stale key survives
    dest.mkdir(mode=0o700)
    dest.chmod(0o700)
    write_pem(dest / source.ca.name, source.ca.read_bytes(), private=False)
    for stem in ROLE_CERTS[role]:
        cert, key = source.cert(stem), source.key(stem)
        if not (cert.is_file() and key.is_file()):
            raise RoleDirError(f"{cert} or its key is missing; run `taskgate certs init`")
        setting = env_name("client_key" if stem.endswith("-client") else "tls_key")
        check_private_key(key, setting=setting)
        write_pem(dest / cert.name, cert.read_bytes(), private=False)
        write_pem(dest / key.name, key.read_bytes(), private=True)


def _copy_redis_password(state_dir: Path, folder: Path, role: Role) -> None:
    """The role's Redis ACL password file, when the state folder has one."""
    source = state_dir / "redis-users" / f"{role}.password"
    dest_dir = folder / "redis-users"
    shutil.rmtree(dest_dir, ignore_errors=True)
    if not source.is_file():
        return
    check_private_key(source, setting=env_name("redis_password_file"))
    dest_dir.mkdir(mode=0o700)
    dest_dir.chmod(0o700)
    write_pem(dest_dir / source.name, source.read_bytes(), private=True)
