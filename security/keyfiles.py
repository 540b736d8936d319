"""The files of a keys folder: key files, the manifest, their modes, their locking.

Shared by :mod:`security.keystore` (folder operations), :mod:`security.keysources`
(environment and secrets folder) and :mod:`security.keyexport` (per-role bundles). Every
check here fails closed with a :class:`~security.errors.KeyRingError` that names the file
or variable and the fix, never the material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from security.errors import KeyRingError
from security.keys import ROLES, Purpose, Role, valid_kid

__all__ = [
    "LEGACY_PURPOSES",
    "MANIFEST",
    "ROTATE_HINT",
    "Entry",
    "Manifest",
    "check_kid",
    "decode_key",
    "locked",
    "prepare_dir",
    "purpose_of",
    "read_key_file",
    "read_manifest",
    "write_key_file",
    "write_manifest",
]

MANIFEST: Final = "keyring.json"
ROTATE_HINT: Final = "create a new key with `taskgate keys rotate`"
#: Purposes a manifest may still list but nothing loads: the single audit key every role
#: once shared. Their entries are kept on rewrite so no history is lost.
LEGACY_PURPOSES: Final = frozenset({"audit"})
_NAMES: Final = frozenset(p.value for p in Purpose)
_MAX_FILE: Final = 64 * 1024  # a key file is ~50 bytes; never slurp something huge by mistake


@dataclass(frozen=True)
class Entry:
    """One key as the manifest lists it."""

    kid: str
    created_at: str
    retired: bool


@dataclass
class Manifest:
    """``keyring.json``: the keys per purpose, oldest -> newest, and for an exported
    bundle the role it was made for (None: a full keys folder)."""

    keys: dict[Purpose, list[Entry]] = field(default_factory=dict)
    role: Role | None = None
    legacy: dict[str, list[Entry]] = field(default_factory=dict)


def prepare_dir(keys_dir: Path | str) -> Path:
    """Create ``keys_dir`` if needed and make it owner-only (0700)."""
    path = Path(keys_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # ours: only the owner may list or replace keys
    return path


@contextlib.contextmanager
def locked(keys_dir: Path) -> Iterator[None]:
    """Serialise writers (CLI and admin API may rotate at the same time)."""
    fd = os.open(keys_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_key_file(path: Path, material: bytes, mode: int) -> None:
    """Write base64 ``material`` to a new file with exactly ``mode`` (never overwrites)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask may have narrowed or widened nothing; be exact
        f.write(base64.b64encode(material) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def write_manifest(keys_dir: Path, manifest: Manifest) -> None:
    """Replace ``keyring.json`` atomically (readers see the old or the new ring)."""
    listed: dict[str, list[Entry]] = {str(p): es for p, es in manifest.keys.items()}
    listed |= manifest.legacy
    doc: dict[str, object] = {
        "version": 1,
        "keys": {
            name: [{"kid": e.kid, "created_at": e.created_at, "retired": e.retired} for e in es]
            for name, es in listed.items()
        },
    }
    if manifest.role is not None:
        doc["role"] = manifest.role
    tmp = keys_dir / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, keys_dir / MANIFEST)


def read_manifest(keys_dir: Path) -> Manifest:
    """Parse and check ``keyring.json`` (kids well-formed and prefixed by their purpose)."""
    path = keys_dir / MANIFEST

    def bad(why: str) -> KeyRingError:
        return KeyRingError(
            f"{path} is malformed ({why}); restore it from a backup", reason="bad_manifest"
        )

    try:
        doc = json.loads(read_key_file(path))
    except ValueError:
        raise bad("not JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != 1
        or not isinstance(doc.get("keys"), dict)
    ):
        raise bad('expected {"version": 1, "keys": {...}}')
    role = doc.get("role")
    if role is not None and role not in ROLES:
        raise bad("unknown role")
    manifest = Manifest(role=role)
    for name, entries in doc["keys"].items():
        if (name not in _NAMES and name not in LEGACY_PURPOSES) or not isinstance(entries, list):
            raise bad("unknown purpose or not a list")
        listed = []
        for e in entries:
            if not (
                isinstance(e, dict)
                and isinstance(e.get("kid"), str)
                and isinstance(e.get("created_at"), str)
                and isinstance(e.get("retired"), bool)
            ):
                raise bad(f"a {name} entry needs kid, created_at and retired")
            _check_prefix(e["kid"], name, str(path))
            listed.append(Entry(e["kid"], e["created_at"], e["retired"]))
        if name in LEGACY_PURPOSES:
            manifest.legacy[name] = listed
        else:
            manifest.keys[Purpose(name)] = listed
    return manifest


def read_key_file(path: Path, *, public: bool = False) -> str:
    """Read a small key file, refusing it if others may read it (or, if public, write it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyRingError(
            f"{path} is missing; restore it from a backup or re-create the keys",
            reason="missing_key",
        ) from None
    except OSError as exc:
        raise KeyRingError(
            f"{path} cannot be read ({exc.strerror}); check its owner and mode", reason="unreadable"
        ) from None
    try:
        mode = os.fstat(fd).st_mode  # fstat the open file: no swap between check and use
        if not stat.S_ISREG(mode):
            raise KeyRingError(f"{path} is not a regular file", reason="bad_key_file")
        if mode & (0o022 if public else 0o077):
            who, fix = ("written", "644") if public else ("read or written", "600")
            raise KeyRingError(
                f"{path} may be {who} by group or others (mode {mode & 0o777:o}); "
                f"run `chmod {fix} {path}`, and {ROTATE_HINT} if it may have been exposed",
                reason="key_exposed",
            )
        data = os.read(fd, _MAX_FILE)  # key files are tiny: one read suffices
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyRingError(f"{path} is not ASCII base64", reason="bad_base64") from None


def decode_key(text: str, where: str) -> bytes:
    """Strict base64 decoding; the error names ``where``, never the text."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(
            f"{where} is not valid base64; re-encode it with `base64 -w0`", reason="bad_base64"
        ) from None


def _check_prefix(kid: str, name: str, where: str) -> None:
    # Purposes share prefixes ("audit-worker-..." also starts with "audit-"): a kid's
    # purpose is the longest name it starts with, so a legacy kid cannot pose as another.
    if not valid_kid(kid) or not kid.startswith(f"{name}-") or _longest_prefix(kid) != name:
        raise KeyRingError(
            f"{where}: malformed {name} key id (it must start with '{name}-' "
            "and use only letters, digits, '-' and '_')",
            reason="bad_kid",
        )


def check_kid(kid: str, purpose: Purpose, where: str) -> None:
    """Refuse a kid that is malformed or does not start with ``<purpose>-``."""
    _check_prefix(kid, str(purpose), where)


def _longest_prefix(kid: str) -> str | None:
    names = [n for n in (*_NAMES, *LEGACY_PURPOSES) if kid.startswith(f"{n}-")]
    return max(names, key=len) if names else None


def purpose_of(kid: str, where: str) -> Purpose:
    """The purpose a kid names by its prefix (``audit-worker-...`` -> ``audit-worker``)."""
    name = _longest_prefix(kid)
    if name is None or name in LEGACY_PURPOSES:
        raise KeyRingError(
            f"{where}: key id must start with a purpose ({', '.join(Purpose)})", reason="bad_kid"
        )
    purpose = Purpose(name)
    check_kid(kid, purpose, where)
    return purpose
