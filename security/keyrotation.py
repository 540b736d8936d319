"""Rotation on the key host: newer keys in the full keys folder, then every role's bundle
exported again from it.

The *key host* is where the full keys folder lives (`taskgate keys`); a role's process holds
only its bundle (:mod:`security.keyexport`), so a key written into a bundle would be unknown
to every other role. Bundles are found in a *roles folder* laid out like
``<state>/roles`` (:mod:`taskgate.devstack.role_dirs`): ``<roles>/<role>/keys``.

Everything that can be checked is checked before a key is written (the key folder is full,
owner-only, readable and writable; each bundle folder holds a bundle of its role and can be
replaced), so a refusal changes nothing. The rotation itself adds key files and then
replaces the manifest atomically (:func:`security.keystore.rotate_keys`): no old key is
ever lost. Bundles are then exported readers first (worker, operator, gateway), each one
built beside its folder and swapped in whole; if one fails, the keys folder already holds
the new keys and the error names the bundles still to export.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from security.errors import KeyRingError
from security.keyexport import export_keys
from security.keyfiles import MANIFEST, read_manifest
from security.keys import Purpose, Role
from security.keystore import check_folder, rotate_keys

__all__ = [
    "BUNDLE_ORDER",
    "RESTART_ORDER",
    "Rotation",
    "audit_target",
    "check_key_host",
    "check_roles_dir",
    "rotate_and_export",
]

RESTART_ORDER: Final = "restart workers first, then gateways, so every reader knows the new keys."
#: Readers before the gateway that seals and signs with the newest key.
BUNDLE_ORDER: Final[tuple[Role, ...]] = ("worker", "operator", "gateway")


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the new key ids (by purpose) and the bundles exported again."""

    new_kids: dict[str, str]
    exported: list[Role]


def audit_target(purposes: Iterable[Purpose] | None) -> str:
    """The target of a rotation's audit record (CLI and console alike): the purposes, or all."""
    return ",".join(sorted(str(p) for p in purposes or [])) or "all"


def _writable(folder: Path, what: str) -> None:
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise KeyRingError(f"{what} {folder} is not readable and writable", reason="unwritable")


def check_key_host(keys_dir: Path | str) -> Path:
    """Refuse anything but a full keys folder (not a bundle) that this process may change."""
    folder = Path(keys_dir)
    check_folder(folder)
    if not folder.is_dir():
        raise KeyRingError(f"key host folder {folder} is not a folder", reason="missing_key")
    _writable(folder, "key host folder")
    role = read_manifest(folder).role
    if role is not None:
        raise KeyRingError(
            f"{folder} is a {role} key bundle, not the key host's full keys folder",
            reason="bundle",
        )
    return folder


def check_roles_dir(roles_dir: Path | str) -> dict[Role, Path]:
    """The bundle folders under ``roles_dir`` (``<role>/keys``), readers first; refuses a
    roles folder that is missing or unwritable, and a ``keys`` folder that is not a bundle
    of its role (an export would refuse to replace it after the keys were rotated)."""
    roles = Path(roles_dir)
    if not roles.is_dir():
        raise KeyRingError(f"roles folder {roles} does not exist", reason="missing_key")
    found: dict[Role, Path] = {}
    for role in BUNDLE_ORDER:
        bundle = roles / role / "keys"
        if not bundle.exists():
            continue
        if not (bundle / MANIFEST).is_file() or read_manifest(bundle).role != role:
            raise KeyRingError(f"{bundle} is not a {role} key bundle", reason="bad_destination")
        _writable(bundle.parent, "bundle folder")
        found[role] = bundle
    return found


def rotate_and_export(
    keys_dir: Path | str,
    purposes: Iterable[Purpose] | None,
    roles_dir: Path | str | None,
    *,
    now: float | None = None,
) -> Rotation:
    """Rotate ``purposes`` (all by default) in the key host's folder, then export every
    bundle found in ``roles_dir`` again. Refusals before the rotation change nothing."""
    folder = check_key_host(keys_dir)
    targets = check_roles_dir(roles_dir) if roles_dir is not None else {}
    wanted = None if purposes is None else [Purpose(p) for p in purposes]
    try:
        ring = rotate_keys(folder, wanted, now=now)
    except OSError as exc:
        raise KeyRingError(
            f"could not write to {folder}: {exc.strerror}", reason="unwritable"
        ) from None
    new_kids = {
        str(keys.purpose): keys.current().kid
        for keys in ring.key_sets()
        if len(keys) and (wanted is None or keys.purpose in wanted)
    }
    exported: list[Role] = []
    for role, bundle in targets.items():
        try:
            export_keys(folder, bundle, role=role)
        except (KeyRingError, OSError) as exc:
            missing = ", ".join(r for r in targets if r not in exported)
            why = exc.message if isinstance(exc, KeyRingError) else str(exc.strerror)
            raise KeyRingError(
                f"keys rotated in {folder}, but the {role} bundle was not exported ({why}); "
                f"still to export: {missing} (`taskgate keys export`)",
                reason="export_failed",
            ) from None
        exported.append(role)
    return Rotation(new_kids=new_kids, exported=exported)
