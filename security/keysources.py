"""Key rings from the environment or a Docker/Kubernetes secrets folder.

* **Environment variables** (:func:`load_keys_from_env`): ``TASKGATE_KEY_<PURPOSE>`` (the
  purpose upper-cased, ``-`` as ``_``: ``TASKGATE_KEY_AUDIT_WORKER``) holds comma-separated
  ``kid:base64`` entries, oldest -> newest (``TASKGATE_KEY_SIGNING`` holds private keys);
  ``TASKGATE_KEY_SIGNING_PUBLIC`` holds public keys (what a worker reads; elsewhere it is
  optional and must match); ``TASKGATE_KEYS_RETIRED`` lists retired kids.

* **A secrets folder** (:func:`load_keys_from_files`): one file per key named ``<kid>``
  holding base64, ``<signing kid>.pub`` for public keys, and an optional ``retired`` file
  listing retired kids. Keys are ordered by kid (generated kids sort by time). Names
  starting with ``.`` (Kubernetes' ``..data``) are skipped.

Either source may hold more than the role loads; a worker never reads a signing private key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from security.errors import KeyRingError
from security.keyfiles import check_kid, decode_key, purpose_of, read_key_file
from security.keyring import ROLE_PURPOSES, KeyRing, Raw, build_ring
from security.keys import Purpose, Role

__all__ = ["ENV_RETIRED", "env_var", "load_keys_from_env", "load_keys_from_files"]

ENV_RETIRED: Final = "TASKGATE_KEYS_RETIRED"
_ENV_SIGNING_PUBLIC: Final = "TASKGATE_KEY_SIGNING_PUBLIC"


def env_var(purpose: Purpose) -> str:
    """The variable holding ``purpose``'s keys (``audit-worker``: ``TASKGATE_KEY_AUDIT_WORKER``)."""
    return f"TASKGATE_KEY_{str(purpose).upper().replace('-', '_')}"


def load_keys_from_env(environ: Mapping[str, str], *, role: Role) -> KeyRing:
    """Load ``role``'s ring from ``TASKGATE_KEY_*`` variables (see the module docstring)."""
    raws: dict[Purpose, list[Raw]] = {}
    for purpose in sorted(ROLE_PURPOSES[role]):
        public_only = purpose is Purpose.SIGNING and role == "worker"
        var = _ENV_SIGNING_PUBLIC if public_only else env_var(purpose)
        for kid, material in _env_entries(environ, var, purpose):
            raw = Raw(kid, var)
            if public_only:
                raw.public, raw.public_where = material, var
            else:
                raw.secret = material
            raws.setdefault(purpose, []).append(raw)
    if role != "worker":
        by_kid = {r.kid: r for r in raws.get(Purpose.SIGNING, [])}
        for kid, material in _env_entries(environ, _ENV_SIGNING_PUBLIC, Purpose.SIGNING):
            if kid not in by_kid:
                raise KeyRingError(
                    f"{_ENV_SIGNING_PUBLIC}: {kid} has no private key in TASKGATE_KEY_SIGNING; "
                    "remove it or add the private key",
                    reason="key_mismatch",
                )
            by_kid[kid].public, by_kid[kid].public_where = material, _ENV_SIGNING_PUBLIC
    _apply_retired(raws, _split_kids(environ.get(ENV_RETIRED, "")), role, ENV_RETIRED)
    return build_ring(raws, role, "the environment", "set TASKGATE_KEY_<PURPOSE>=kid:base64")


def load_keys_from_files(secrets_dir: Path | str, *, role: Role) -> KeyRing:
    """Load ``role``'s ring from a Docker/Kubernetes secrets folder (see the module docstring)."""
    secrets_dir = Path(secrets_dir)
    if not secrets_dir.is_dir():
        raise KeyRingError(
            f"secrets folder {secrets_dir} does not exist; mount the key secrets there",
            reason="missing_key",
        )
    raws: dict[Purpose, dict[str, Raw]] = {}
    retired: list[str] = []
    for path in sorted(secrets_dir.iterdir()):
        name = path.name
        if name.startswith("."):
            continue
        if name == "retired":
            retired = _split_kids(read_key_file(path, public=True))
            continue
        is_pub = name.endswith(".pub")
        kid = name.removesuffix(".pub")
        purpose = purpose_of(kid, str(path))
        if purpose not in ROLE_PURPOSES[role] or (
            purpose is Purpose.SIGNING and role == "worker" and not is_pub
        ):
            continue  # a worker never opens a signing private key
        if is_pub and purpose is not Purpose.SIGNING:
            raise KeyRingError(
                f"{path}: only signing keys have a .pub file; remove it", reason="bad_key_file"
            )
        raw = raws.setdefault(purpose, {}).setdefault(kid, Raw(kid, str(path)))
        material = decode_key(read_key_file(path, public=is_pub), str(path))
        if is_pub:
            raw.public, raw.public_where = material, str(path)
        else:
            raw.secret, raw.where = material, str(path)
    listed = {p: list(by_kid.values()) for p, by_kid in raws.items()}
    _apply_retired(listed, retired, role, str(secrets_dir / "retired"))
    return build_ring(listed, role, str(secrets_dir), "add a file named after the key id")


def _env_entries(environ: Mapping[str, str], var: str, purpose: Purpose) -> list[tuple[str, bytes]]:
    out = []
    for n, item in enumerate(filter(None, (s.strip() for s in environ.get(var, "").split(","))), 1):
        kid, sep, material = item.partition(":")
        if not sep:
            raise KeyRingError(f"{var} entry {n}: expected kid:base64", reason="bad_key_entry")
        check_kid(kid, purpose, var)
        out.append((kid, decode_key(material, f"{var} entry {n}")))
    return out


def _split_kids(text: str) -> list[str]:
    return [k for k in text.replace(",", " ").split() if k]


def _apply_retired(raws: dict[Purpose, list[Raw]], kids: list[str], role: Role, where: str) -> None:
    for kid in kids:
        purpose = purpose_of(kid, where)
        if purpose not in ROLE_PURPOSES[role]:
            continue
        found = [r for r in raws.get(purpose, []) if r.kid == kid]
        if not found:
            # A typo here would leave a key live that the operator meant to retire.
            raise KeyRingError(f"{where}: no key {kid} to retire", reason="unknown_kid")
        found[0].retired = True
