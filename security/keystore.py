"""Load, create, rotate and retire the key ring.

Six purposes (:class:`~security.keys.Purpose`): ``broker``, ``vault`` (AES-256-GCM, exactly
32 bytes), ``audit``, ``token``, ``state`` (HMAC-SHA256, at least 32 bytes) and ``signing``
(Ed25519).
Key ids look like ``broker-20250102T030405Z-1a2b3c4d``; every kid starts with its purpose.

Three sources, one result (:class:`KeyRing`):

* **A keys folder** (default ``<state_dir>/keys/``), written by :func:`init_keys`,
  :func:`rotate_keys` and :func:`retire_key` and read by :func:`load_keys`::

      keys/                      0700
        keyring.json             0600  {"version": 1, "keys": {"<purpose>": [
                                         {"kid": ..., "created_at": "...Z", "retired": false},
                                         ...oldest -> newest]}}
        <kid>.key                0600  base64: 32 random bytes, or the raw Ed25519 private key
        <signing kid>.pub        0644  base64: the raw Ed25519 public key

* **Environment variables** (:func:`load_keys_from_env`): ``TASKGATE_KEY_<PURPOSE>`` holds
  comma-separated ``kid:base64`` entries, oldest -> newest (``TASKGATE_KEY_SIGNING`` holds
  private keys); ``TASKGATE_KEY_SIGNING_PUBLIC`` holds public keys (what a worker reads; on the
  gateway it is optional and must match); ``TASKGATE_KEYS_RETIRED`` lists retired kids.

* **A secrets folder** (:func:`load_keys_from_files`; Docker or Kubernetes secrets): one file
  per key named ``<kid>`` holding base64, ``<signing kid>.pub`` for public keys, and an optional
  ``retired`` file listing retired kids. Keys are ordered by kid (generated kids sort by time).
  Names starting with ``.`` (Kubernetes' ``..data``) are skipped.

Roles: a ``"gateway"`` loads everything. A ``"worker"`` loads broker, vault and audit keys and
only the public half of signing keys: it never opens a signing private key, so it can run
with none present. Its ``token`` and ``state`` sets are empty.

Loading refuses (:class:`KeyRingError`, naming the file or variable and the fix, never the
material): a missing purpose, a key under 256 bits, a secret file or manifest that group or
others may read or write (a ``.pub`` or ``retired`` file others may write), malformed base64,
a malformed manifest, a signing public key that does not match its private key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from security.errors import KeyRingError
from security.keys import MIN_KEY_BYTES, KeySet, Purpose, SigningKey, SymmetricKey, valid_kid

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

Role = Literal["gateway", "worker"]
MANIFEST = "keyring.json"
ENV_RETIRED = "TASKGATE_KEYS_RETIRED"
_ENV_SIGNING_PUBLIC = "TASKGATE_KEY_SIGNING_PUBLIC"
_AES = frozenset({Purpose.BROKER, Purpose.VAULT})  # AES-256 takes exactly 32 bytes
_NAMES = frozenset(p.value for p in Purpose)
_ROLE_PURPOSES: dict[str, frozenset[Purpose]] = {
    "gateway": frozenset(Purpose),
    "worker": frozenset({Purpose.BROKER, Purpose.VAULT, Purpose.AUDIT, Purpose.SIGNING}),
}
_MAX_FILE = 64 * 1024  # a key file is ~50 bytes; never slurp something huge by mistake
_ROTATE = "create a new key with `taskgate keys rotate`"


@dataclass(frozen=True)
class KeyRing:
    """One :class:`KeySet` per purpose. ``repr`` shows key ids only."""

    broker: KeySet[SymmetricKey]
    vault: KeySet[SymmetricKey]
    audit: KeySet[SymmetricKey]
    token: KeySet[SymmetricKey]
    signing: KeySet[SigningKey]
    state: KeySet[SymmetricKey]


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see about a key: never the material, only a fingerprint."""

    kid: str
    purpose: Purpose
    created_at: str
    retired: bool
    fingerprint: str


@dataclass(frozen=True)
class _Entry:
    kid: str
    created_at: str
    retired: bool


@dataclass
class _Raw:
    """One key as read from a source, before it is checked."""

    kid: str
    where: str  # the file or variable holding it, for error messages
    secret: bytes | None = None  # symmetric secret, or the raw Ed25519 private key
    public: bytes | None = None
    public_where: str = ""
    retired: bool = False


# ---------------------------------------------------------------- keys folder: writing


def init_keys(keys_dir: Path | str, *, now: float | None = None) -> KeyRing:
    """Create the keys folder and a key for every purpose that has no live one.

    Idempotent: existing keys are kept. Returns the gateway's ring.
    """
    keys_dir = _prepare_dir(keys_dir)
    with _locked(keys_dir):
        exists = (keys_dir / MANIFEST).exists()
        manifest = _read_manifest(keys_dir) if exists else {}
        changed = not exists
        for purpose in Purpose:
            if not any(not e.retired for e in manifest.get(purpose, [])):
                manifest.setdefault(purpose, []).append(_new_key(keys_dir, purpose, now))
                changed = True
        if changed:
            _write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="gateway")


def rotate_keys(
    keys_dir: Path | str, purposes: Iterable[Purpose] | None = None, *, now: float | None = None
) -> KeyRing:
    """Add a newer key for each purpose (all by default); older keys stay live."""
    keys_dir = _prepare_dir(keys_dir)
    with _locked(keys_dir):
        manifest = _read_manifest(keys_dir)
        for p in Purpose if purposes is None else purposes:
            purpose = Purpose(p)  # a plain "signing" string must still get an Ed25519 key
            manifest.setdefault(purpose, []).append(_new_key(keys_dir, purpose, now))
        _write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="gateway")


def retire_key(keys_dir: Path | str, kid: str) -> KeyRing:
    """Mark ``kid`` retired: what it sealed or signed is refused from now on.

    Refuses to retire the last live key of a purpose (rotate first). Retiring twice is a no-op.
    """
    keys_dir = _prepare_dir(keys_dir)
    with _locked(keys_dir):
        manifest = _read_manifest(keys_dir)
        found = [(p, es, i) for p, es in manifest.items() for i, e in enumerate(es) if e.kid == kid]
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
            _write_manifest(keys_dir, manifest)
    return load_keys(keys_dir, role="gateway")


def _prepare_dir(keys_dir: Path | str) -> Path:
    path = Path(keys_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # ours: only the owner may list or replace keys
    return path


@contextlib.contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    """Serialise writers (CLI and admin API may rotate at the same time)."""
    fd = os.open(keys_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _new_key(keys_dir: Path, purpose: Purpose, now: float | None) -> _Entry:
    when = time.gmtime(time.time() if now is None else now)
    kid = f"{purpose}-{time.strftime('%Y%m%dT%H%M%SZ', when)}-{secrets.token_hex(4)}"
    if purpose is Purpose.SIGNING:
        private = Ed25519PrivateKey.generate()
        _write_file(keys_dir / f"{kid}.pub", private.public_key().public_bytes_raw(), 0o644)
        _write_file(keys_dir / f"{kid}.key", private.private_bytes_raw(), 0o600)
    else:
        _write_file(keys_dir / f"{kid}.key", os.urandom(MIN_KEY_BYTES), 0o600)
    return _Entry(kid, time.strftime("%Y-%m-%dT%H:%M:%SZ", when), retired=False)


def _write_file(path: Path, material: bytes, mode: int) -> None:
    # O_EXCL: a key file is written once and never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask may have narrowed or widened nothing; be exact
        f.write(base64.b64encode(material) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _write_manifest(keys_dir: Path, manifest: dict[Purpose, list[_Entry]]) -> None:
    doc = {
        "version": 1,
        "keys": {
            str(p): [{"kid": e.kid, "created_at": e.created_at, "retired": e.retired} for e in es]
            for p, es in manifest.items()
        },
    }
    tmp = keys_dir / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, keys_dir / MANIFEST)  # atomic: readers see the old or the new ring


# ---------------------------------------------------------------- keys folder: reading


def load_keys(keys_dir: Path | str, *, role: Role) -> KeyRing:
    """Load the ring from a keys folder for a ``"gateway"`` or a ``"worker"``."""
    keys_dir = Path(keys_dir)
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
    raws: dict[Purpose, list[_Raw]] = {}
    for purpose, entries in _read_manifest(keys_dir).items():
        if purpose not in _ROLE_PURPOSES[role]:
            continue
        for e in entries:
            raw = _Raw(e.kid, str(keys_dir / f"{e.kid}.key"), retired=e.retired)
            if purpose is not Purpose.SIGNING or role == "gateway":
                raw.secret = _decode(_read(Path(raw.where)), raw.where)
            if purpose is Purpose.SIGNING:
                raw.public_where = str(keys_dir / f"{e.kid}.pub")
                raw.public = _decode(_read(Path(raw.public_where), public=True), raw.public_where)
            raws.setdefault(purpose, []).append(raw)
    return _build_ring(raws, role, str(keys_dir), "run `taskgate keys init`")


def list_keys(keys_dir: Path | str) -> list[KeyInfo]:
    """Every key in the folder, by purpose then oldest -> newest, with a fingerprint."""
    keys_dir = Path(keys_dir)
    out = []
    for purpose, entries in _read_manifest(keys_dir).items():
        for e in entries:
            # Signing keys are fingerprinted by their public half, others by the secret.
            name = f"{e.kid}.pub" if purpose is Purpose.SIGNING else f"{e.kid}.key"
            path = keys_dir / name
            material = _decode(_read(path, public=name.endswith(".pub")), str(path))
            digest = hashlib.sha256(b"taskgate key fingerprint\0" + material).hexdigest()
            out.append(KeyInfo(e.kid, purpose, e.created_at, e.retired, digest[:16]))
    return out


def _read_manifest(keys_dir: Path) -> dict[Purpose, list[_Entry]]:
    path = keys_dir / MANIFEST

    def bad(why: str) -> KeyRingError:
        return KeyRingError(
            f"{path} is malformed ({why}); restore it from a backup", reason="bad_manifest"
        )

    try:
        doc = json.loads(_read(path))
    except ValueError:
        raise bad("not JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != 1
        or not isinstance(doc.get("keys"), dict)
    ):
        raise bad('expected {"version": 1, "keys": {...}}')
    manifest: dict[Purpose, list[_Entry]] = {}
    for name, entries in doc["keys"].items():
        if name not in _NAMES or not isinstance(entries, list):
            raise bad("unknown purpose or not a list")
        purpose = Purpose(name)
        for e in entries:
            if not (
                isinstance(e, dict)
                and isinstance(e.get("kid"), str)
                and isinstance(e.get("created_at"), str)
                and isinstance(e.get("retired"), bool)
            ):
                raise bad(f"a {purpose} entry needs kid, created_at and retired")
            _check_kid(e["kid"], purpose, str(path))
            manifest.setdefault(purpose, []).append(_Entry(e["kid"], e["created_at"], e["retired"]))
    return manifest


# ---------------------------------------------------------------- other sources


def load_keys_from_env(environ: Mapping[str, str], *, role: Role) -> KeyRing:
    """Load the ring from ``TASKGATE_KEY_*`` variables (see the module docstring)."""
    raws: dict[Purpose, list[_Raw]] = {}
    for purpose in sorted(_ROLE_PURPOSES[role]):
        public_only = purpose is Purpose.SIGNING and role == "worker"
        var = _ENV_SIGNING_PUBLIC if public_only else f"TASKGATE_KEY_{purpose.upper()}"
        for kid, material in _env_entries(environ, var, purpose):
            raw = _Raw(kid, var)
            if public_only:
                raw.public, raw.public_where = material, var
            else:
                raw.secret = material
            raws.setdefault(purpose, []).append(raw)
    if role == "gateway":
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
    return _build_ring(raws, role, "the environment", "set TASKGATE_KEY_<PURPOSE>=kid:base64")


def load_keys_from_files(secrets_dir: Path | str, *, role: Role) -> KeyRing:
    """Load the ring from a Docker/Kubernetes secrets folder (see the module docstring)."""
    secrets_dir = Path(secrets_dir)
    if not secrets_dir.is_dir():
        raise KeyRingError(
            f"secrets folder {secrets_dir} does not exist; mount the key secrets there",
            reason="missing_key",
        )
    raws: dict[Purpose, dict[str, _Raw]] = {}
    retired: list[str] = []
    for path in sorted(secrets_dir.iterdir()):
        name = path.name
        if name.startswith("."):
            continue
        if name == "retired":
            retired = _split_kids(_read(path, public=True))
            continue
        is_pub = name.endswith(".pub")
        kid = name.removesuffix(".pub")
        purpose = _purpose_of(kid, str(path))
        if purpose not in _ROLE_PURPOSES[role] or (
            purpose is Purpose.SIGNING and role == "worker" and not is_pub
        ):
            continue  # a worker never opens a signing private key
        if is_pub and purpose is not Purpose.SIGNING:
            raise KeyRingError(
                f"{path}: only signing keys have a .pub file; remove it", reason="bad_key_file"
            )
        raw = raws.setdefault(purpose, {}).setdefault(kid, _Raw(kid, str(path)))
        material = _decode(_read(path, public=is_pub), str(path))
        if is_pub:
            raw.public, raw.public_where = material, str(path)
        else:
            raw.secret, raw.where = material, str(path)
    listed = {p: list(by_kid.values()) for p, by_kid in raws.items()}
    _apply_retired(listed, retired, role, str(secrets_dir / "retired"))
    return _build_ring(listed, role, str(secrets_dir), "add a file named after the key id")


def _env_entries(environ: Mapping[str, str], var: str, purpose: Purpose) -> list[tuple[str, bytes]]:
    out = []
    for n, item in enumerate(filter(None, (s.strip() for s in environ.get(var, "").split(","))), 1):
        kid, sep, material = item.partition(":")
        if not sep:
            raise KeyRingError(f"{var} entry {n}: expected kid:base64", reason="bad_key_entry")
        _check_kid(kid, purpose, var)
        out.append((kid, _decode(material, f"{var} entry {n}")))
    return out


def _split_kids(text: str) -> list[str]:
    return [k for k in text.replace(",", " ").split() if k]


def _apply_retired(
    raws: dict[Purpose, list[_Raw]], kids: list[str], role: Role, where: str
) -> None:
    for kid in kids:
        purpose = _purpose_of(kid, where)
        if purpose not in _ROLE_PURPOSES[role]:
            continue
        found = [r for r in raws.get(purpose, []) if r.kid == kid]
        if not found:
            # A typo here would leave a key live that the operator meant to retire.
            raise KeyRingError(f"{where}: no key {kid} to retire", reason="unknown_kid")
        found[0].retired = True


# ---------------------------------------------------------------- shared checks


def _read(path: Path, *, public: bool = False) -> str:
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
                f"run `chmod {fix} {path}`, and {_ROTATE} if it may have been exposed",
                reason="key_exposed",
            )
        data = os.read(fd, _MAX_FILE)  # key files are tiny: one read suffices
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyRingError(f"{path} is not ASCII base64", reason="bad_base64") from None


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(
            f"{where} is not valid base64; re-encode it with `base64 -w0`", reason="bad_base64"
        ) from None


def _check_kid(kid: str, purpose: Purpose, where: str) -> None:
    if not valid_kid(kid) or not kid.startswith(f"{purpose}-"):
        raise KeyRingError(
            f"{where}: malformed {purpose} key id (it must start with '{purpose}-' "
            "and use only letters, digits, '-' and '_')",
            reason="bad_kid",
        )


def _purpose_of(kid: str, where: str) -> Purpose:
    prefix = kid.partition("-")[0]
    if prefix not in _NAMES:
        raise KeyRingError(
            f"{where}: key id must start with a purpose ({', '.join(Purpose)})", reason="bad_kid"
        )
    purpose = Purpose(prefix)
    _check_kid(kid, purpose, where)
    return purpose


def _build_ring(raws: dict[Purpose, list[_Raw]], role: Role, source: str, fix: str) -> KeyRing:
    for purpose in (p for p in Purpose if p in _ROLE_PURPOSES[role]):
        if not any(not r.retired for r in raws.get(purpose, [])):
            raise KeyRingError(f"no live {purpose} key in {source}; {fix}", reason="missing_key")

    def symmetric(purpose: Purpose) -> KeySet[SymmetricKey]:
        return KeySet(purpose, [_symmetric(purpose, r) for r in raws.get(purpose, [])])

    return KeyRing(
        broker=symmetric(Purpose.BROKER),
        vault=symmetric(Purpose.VAULT),
        audit=symmetric(Purpose.AUDIT),
        token=symmetric(Purpose.TOKEN),
        signing=KeySet(Purpose.SIGNING, [_signing(r, role) for r in raws.get(Purpose.SIGNING, [])]),
        state=symmetric(Purpose.STATE),
    )


def _symmetric(purpose: Purpose, raw: _Raw) -> SymmetricKey:
    secret = raw.secret or b""
    if len(secret) < MIN_KEY_BYTES or (purpose in _AES and len(secret) != MIN_KEY_BYTES):
        need = "exactly 256" if purpose in _AES else "at least 256"
        raise KeyRingError(
            f"{raw.where}: {purpose} key is {len(secret) * 8} bits, {need} are required; {_ROTATE}",
            reason="key_too_short" if len(secret) < MIN_KEY_BYTES else "bad_key_length",
        )
    return SymmetricKey(raw.kid, purpose, secret, retired=raw.retired)


def _signing(raw: _Raw, role: Role) -> SigningKey:
    """The gateway's key pair (public half checked if given), or a worker's public key."""
    if role == "worker":
        public_raw = _exact32(raw.public or b"", raw.public_where)
        public = Ed25519PublicKey.from_public_bytes(public_raw)
        return SigningKey(raw.kid, public, None, retired=raw.retired)
    if raw.secret is None:
        raise KeyRingError(
            f"{raw.public_where}: the gateway needs the private key of {raw.kid}; "
            "add it next to the public key",
            reason="missing_key",
        )
    private = Ed25519PrivateKey.from_private_bytes(_exact32(raw.secret, raw.where))
    derived = private.public_key().public_bytes_raw()
    if raw.public is not None and not hmac.compare_digest(
        derived, _exact32(raw.public, raw.public_where)
    ):
        raise KeyRingError(
            f"{raw.public_where}: public key {raw.kid} does not match its private key; "
            "restore the matching pair or rotate",
            reason="key_mismatch",
        )
    return SigningKey(raw.kid, private.public_key(), private, retired=raw.retired)


def _exact32(material: bytes, where: str) -> bytes:
    if len(material) != 32:
        raise KeyRingError(
            f"{where}: an Ed25519 key is 256 bits, this one is {len(material) * 8}; {_ROTATE}",
            reason="key_too_short" if len(material) < 32 else "bad_key_length",
        )
    return material
