"""Load, create, rotate and retire the key ring kept in a keys folder.

Eight purposes (:class:`~security.keys.Purpose`): ``broker``, ``vault`` (AES-256-GCM,
exactly 32 bytes), ``token``, ``state`` and the three audit keys ``audit-gateway``,
``audit-worker``, ``audit-operator`` (HMAC-SHA256, at least 32 bytes), and ``signing``
(Ed25519). Key ids look like ``broker-20250102T030405Z-1a2b3c4d``; every kid starts with
its purpose.

A keys folder (default ``<state_dir>/keys/``), written by :func:`init_keys`,
:func:`rotate_keys` and :func:`retire_key` and read by :func:`load_keys`::

    keys/                      0700
      keyring.json             0600  {"version": 1, "keys": {"<purpose>": [
                                       {"kid": ..., "created_at": "...Z", "retired": false},
                                       ...oldest -> newest]}}
      <kid>.key                0600  base64: 32 random bytes, or the raw Ed25519 private key
      <signing kid>.pub        0644  base64: the raw Ed25519 public key

A *bundle* (:func:`security.keyexport.export_keys`) has the same layout, holds only what
one role loads, and its manifest names that role (``"role": "worker"``): it loads as that
role only, and keys are rotated in the full folder, then exported again.

Other sources (environment variables, a secrets folder) live in :mod:`security.keysources`;
what each role loads in :mod:`security.keyring`. Loading refuses (:class:`KeyRingError`,
naming the file and the fix, never the material): a missing purpose, a key under 256 bits,
a secret file or manifest that group or others may read or write (a ``.pub`` file others
may write), malformed base64, a malformed manifest, a signing public key that does not
match its private key, a bundle made for another role. A manifest may still list the
legacy shared ``audit`` key: it is kept, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.errors import KeyRingError
from security.keyfiles import (
    MANIFEST,
    Entry,
    Manifest,
    decode_key,
    locked,
    prepare_dir,
    read_key_file,
    read_manifest,
    write_key_file,
    write_manifest,
)
from security.keyring import ROLE_PURPOSES, KeyRing, Raw, build_ring
from security.keys import MIN_KEY_BYTES, Purpose, Role
from security.keysources import ENV_RETIRED, load_keys_from_env, load_keys_from_files

__all__ = [
    "ENV_RETIRED",
    "MANIFEST",
    "KeyInfo",
    "KeyRing",
    "Role",
    "init_keys",
    "list_keys",
    "load_keys",
    "load_keys_from_env",
    "load_keys_from_files",
    "retire_key",
    "rotate_keys",
]


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see about a key: never the material, only a fingerprint."""

    kid: str
    purpose: Purpose
    created_at: str
    retired: bool
    fingerprint: str


# ---------------------------------------------------------------- writing


def init_keys(keys_dir: Path | str, *, now: float | None = None) -> KeyRing:
    """Create the keys folder and a key for every purpose that has no live one.

    Idempotent: existing keys are kept, missing purposes are added (an older folder gains
    the per-role audit keys). Returns the operator's ring (every key).
    """
    keys_dir = prepare_dir(keys_dir)
    with locked(keys_dir):
        exists = (keys_dir / MANIFEST).exists()
        manifest = _full_manifest(keys_dir) if exists else Manifest()
        changed = not exists
        for purpose in Purpose:
            if not any(not e.retired for e in manifest.keys.get(purpose, [])):
                manifest.keys.setdefault(purpose, []).append(_new_key(keys_dir, purpose, now))
                changed = True
        if changed:
            write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="operator")


def rotate_keys(
    keys_dir: Path | str, purposes: Iterable[Purpose] | None = None, *, now: float | None = None
) -> KeyRing:
    """Add a newer key for each purpose (all by default); older keys stay live."""
    keys_dir = prepare_dir(keys_dir)
    with locked(keys_dir):
        manifest = _full_manifest(keys_dir)
        for p in Purpose if purposes is None else purposes:
            purpose = Purpose(p)  # a plain "signing" string must still get an Ed25519 key
            manifest.keys.setdefault(purpose, []).append(_new_key(keys_dir, purpose, now))
        write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="operator")


def retire_key(keys_dir: Path | str, kid: str) -> KeyRing:
    """Mark ``kid`` retired: what it sealed or signed is refused from now on.

    Refuses to retire the last live key of a purpose (rotate first). Retiring twice is a no-op.
    """
    keys_dir = prepare_dir(keys_dir)
    with locked(keys_dir):
        manifest = _full_manifest(keys_dir)
        found = [
            (p, es, i) for p, es in manifest.keys.items() for i, e in enumerate(es) if e.kid == kid
        ]
        if not found:
            raise KeyRingError(f"no key {kid} in {keys_dir / MANIFEST}", reason="unknown_kid")
        purpose, entries, i = found[0]
        if not entries[i].retired:
            if sum(not e.retired for e in entries) == 1:
                raise KeyRingError(
                    f"{kid} is the last live {purpose} key; rotate first, then retire it",
                    reason="last_live_key",
                )
            entries[i] = replace(entries[i], retired=True)
            write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="operator")


def _full_manifest(keys_dir: Path) -> Manifest:
    """The manifest of a full keys folder; a role's bundle is never written to in place."""
    manifest = read_manifest(keys_dir)
    if manifest.role is not None:
        raise KeyRingError(
            f"{keys_dir} is a {manifest.role} key bundle; create, rotate and retire keys in the "
            "full keys folder, then run `taskgate keys export` again",
            reason="bundle",
        )
    return manifest


def _new_key(keys_dir: Path, purpose: Purpose, now: float | None) -> Entry:
    when = time.gmtime(time.time() if now is None else now)
    kid = f"{purpose}-{time.strftime('%Y%m%dT%H%M%SZ', when)}-{secrets.token_hex(4)}"
    if purpose is Purpose.SIGNING:
        private = Ed25519PrivateKey.generate()
        write_key_file(keys_dir / f"{kid}.pub", private.public_key().public_bytes_raw(), 0o644)
        write_key_file(keys_dir / f"{kid}.key", private.private_bytes_raw(), 0o600)
    else:
        write_key_file(keys_dir / f"{kid}.key", os.urandom(MIN_KEY_BYTES), 0o600)
    return Entry(kid, time.strftime("%Y-%m-%dT%H:%M:%SZ", when), retired=False)


# ---------------------------------------------------------------- reading


def load_keys(keys_dir: Path | str, *, role: Role) -> KeyRing:
    """Load ``role``'s ring from a keys folder or from a bundle exported for ``role``."""
    keys_dir = Path(keys_dir)
    check_folder(keys_dir)
    manifest = read_manifest(keys_dir)
    fix = "run `taskgate keys init`"
    if manifest.role is not None:
        fix = f"export it again with `taskgate keys export --role {role}`"
        if manifest.role != role:
            raise KeyRingError(
                f"{keys_dir} is a {manifest.role} key bundle, not a {role}'s; give the {role} "
                f"its own (`taskgate keys export --role {role} DIR`)",
                reason="wrong_role",
            )
    return build_ring(read_raws(keys_dir, manifest, role), role, str(keys_dir), fix)


def check_folder(keys_dir: Path) -> None:
    """Refuse a keys folder that is missing or open to group or others."""
    try:
        mode = keys_dir.stat().st_mode
    except FileNotFoundError:
        raise KeyRingError(
            f"keys folder {keys_dir} does not exist; run `taskgate keys init`",
            reason="missing_key",
        ) from None
    if mode & 0o077:
        raise KeyRingError(
            f"keys folder {keys_dir} is open to group or others (mode {mode & 0o777:o}); "
            f"run `chmod 700 {keys_dir}`",
            reason="key_exposed",
        )


def read_raws(keys_dir: Path, manifest: Manifest, role: Role) -> dict[Purpose, list[Raw]]:
    """The material of every key ``role`` loads; a worker never opens a signing ``.key``."""
    raws: dict[Purpose, list[Raw]] = {}
    for purpose, entries in manifest.keys.items():
        if purpose not in ROLE_PURPOSES[role]:
            continue
        for e in entries:
            raw = Raw(e.kid, str(keys_dir / f"{e.kid}.key"), retired=e.retired)
            if purpose is not Purpose.SIGNING or role != "worker":
                raw.secret = decode_key(read_key_file(Path(raw.where)), raw.where)
            if purpose is Purpose.SIGNING:
                raw.public_where = str(keys_dir / f"{e.kid}.pub")
                text = read_key_file(Path(raw.public_where), public=True)
                raw.public = decode_key(text, raw.public_where)
            raws.setdefault(purpose, []).append(raw)
    return raws


def list_keys(keys_dir: Path | str) -> list[KeyInfo]:
    """Every key in the folder, by purpose then oldest -> newest, with a fingerprint."""
    keys_dir = Path(keys_dir)
    out = []
    for purpose, entries in read_manifest(keys_dir).keys.items():
        for e in entries:
            # Signing keys are fingerprinted by their public half, others by the secret.
            name = f"{e.kid}.pub" if purpose is Purpose.SIGNING else f"{e.kid}.key"
            path = keys_dir / name
            material = decode_key(read_key_file(path, public=name.endswith(".pub")), str(path))
            digest = hashlib.sha256(b"taskgate key fingerprint\0" + material).hexdigest()
            out.append(KeyInfo(e.kid, purpose, e.created_at, e.retired, digest[:16]))
    return out
