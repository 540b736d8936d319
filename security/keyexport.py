"""Per-role key bundles: a keys folder holding exactly what one role loads.

:func:`export_keys` copies, from the full keys folder, the keys of the purposes the role
loads (:data:`security.keyring.ROLE_PURPOSES`) into a new folder (0700, files 0600, a
manifest naming the role), so a process can be given its own bundle and nothing more:

* a worker's bundle holds broker, vault and ``audit-worker`` keys and the *public* signing
  keys only: no signing private key, token, state or other role's audit key;
* a gateway's adds token, state, the signing private keys and every audit key;
* an operator's holds every key.

Retired keys are exported as retired (what they sealed stays readable or refused as in
the full folder). The bundle is built beside the destination and swapped in, so a reader
never sees half a bundle, and is loaded back as the role before it replaces anything.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from security.errors import KeyRingError
from security.keyfiles import (
    MANIFEST,
    Manifest,
    decode_key,
    prepare_dir,
    read_key_file,
    read_manifest,
    write_key_file,
    write_manifest,
)
from security.keyring import ROLE_PURPOSES, KeyRing
from security.keys import Purpose, Role
from security.keystore import check_folder, load_keys

__all__ = ["bundle_files", "export_keys"]


def bundle_files(keys_dir: Path | str, role: Role) -> list[str]:
    """The file names a bundle for ``role`` made from ``keys_dir`` holds (manifest first)."""
    manifest = read_manifest(Path(keys_dir))
    names = [MANIFEST]
    for purpose, entries in manifest.keys.items():
        if purpose not in ROLE_PURPOSES[role]:
            continue
        for e in entries:
            if purpose is Purpose.SIGNING:
                names.append(f"{e.kid}.pub")
                if role == "worker":
                    continue  # the public half only: a worker never holds a signing key
            names.append(f"{e.kid}.key")
    return names


def export_keys(keys_dir: Path | str, dest: Path | str, *, role: Role) -> KeyRing:
    """Write ``role``'s bundle from the full folder ``keys_dir`` to ``dest``; return its ring.

    ``dest`` may be absent, empty, or an earlier bundle (replaced whole: a re-export after
    a rotation leaves no stale key behind). Refuses any other non-empty folder, and a
    source that is itself a bundle.
    """
    src, dest = Path(keys_dir), Path(dest)
    check_folder(src)
    manifest = read_manifest(src)
    if manifest.role is not None:
        raise KeyRingError(
            f"{src} is a {manifest.role} key bundle; export from the full keys folder",
            reason="bundle",
        )
    if dest.exists() and any(dest.iterdir()) and not _is_bundle(dest):
        raise KeyRingError(
            f"{dest} is not empty and holds no key bundle; choose an empty or new folder",
            reason="bad_destination",
        )
    load_keys(src, role=role)  # the source must hold everything the role needs
    prepare_dir(dest.parent)
    stage = prepare_dir(dest.parent / f".{dest.name}.export-{secrets.token_hex(4)}")
    try:
        _write_bundle(src, stage, manifest, role)
        ring = load_keys(stage, role=role)
        _swap_in(stage, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ring


def _is_bundle(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier bundle: the only thing an export replaces (never
    a full keys folder, the source itself say, whose other keys would be lost)."""
    return (folder / MANIFEST).is_file() and read_manifest(folder).role is not None


def _write_bundle(src: Path, stage: Path, manifest: Manifest, role: Role) -> None:
    picked = {p: es for p, es in manifest.keys.items() if p in ROLE_PURPOSES[role]}
    for name in bundle_files(src, role)[1:]:
        public = name.endswith(".pub")
        material = decode_key(read_key_file(src / name, public=public), str(src / name))
        write_key_file(stage / name, material, 0o600)
    write_manifest(stage, Manifest(keys=picked, role=role))


def _swap_in(stage: Path, dest: Path) -> None:
    """Replace ``dest`` with ``stage`` (two renames; the old bundle is then removed)."""
    old = dest.parent / f".{dest.name}.old-{secrets.token_hex(4)}"
    if dest.exists():
        os.rename(dest, old)
    os.rename(stage, dest)
    shutil.rmtree(old, ignore_errors=True)
    dest.chmod(0o700)
