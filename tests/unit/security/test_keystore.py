"""Key ring storage: the keys folder, environment variables and a secrets folder."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.errors import KeyRetiredError, KeyRingError
from security.keys import KeySet, Purpose, SigningKey, valid_kid
from security.keysources import env_var
from security.keystore import (
    ENV_RETIRED,
    MANIFEST,
    KeyRing,
    init_keys,
    list_keys,
    load_keys,
    load_keys_from_env,
    load_keys_from_files,
    retire_key,
    rotate_keys,
)

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
SYMMETRIC = tuple(p for p in Purpose if p is not Purpose.SIGNING)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def manifest_doc(keys_dir: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((keys_dir / MANIFEST).read_text())
    return doc


def write_manifest(keys_dir: Path, doc: object) -> None:
    (keys_dir / MANIFEST).write_text(json.dumps(doc))


def kids(ring: KeyRing, purpose: Purpose) -> list[str]:
    keys = ring.signing if purpose is Purpose.SIGNING else ring.purpose(purpose)
    return [k.kid for k in keys]


def refused(reason: str, call: object, *args: object, **kwargs: object) -> KeyRingError:
    """Run ``call`` and return the KeyRingError it must raise with ``reason``."""
    with pytest.raises(KeyRingError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert info.value.reason == reason, info.value.message
    return info.value


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "keys"


@pytest.fixture
def ring_dir(keys_dir: Path) -> Path:
    init_keys(keys_dir, now=NOW)
    return keys_dir


def first_kid(keys_dir: Path, purpose: Purpose) -> str:
    return kids(load_keys(keys_dir, role="gateway"), purpose)[0]


# ---------------------------------------------------------------- init / rotate / retire


def test_init_creates_one_key_per_purpose_with_private_modes(keys_dir: Path) -> None:
    """init makes a 0700 folder, a 0600 manifest, 0600 key files and 0644 public keys."""
    ring = init_keys(keys_dir, now=NOW)
    assert mode_of(keys_dir) == 0o700
    assert mode_of(keys_dir / MANIFEST) == 0o600
    for purpose in Purpose:
        (kid,) = kids(ring, purpose)
        assert valid_kid(kid)
        assert kid.startswith(f"{purpose}-20250615T150640Z-")
        assert mode_of(keys_dir / f"{kid}.key") == 0o600
    assert mode_of(keys_dir / f"{ring.signing.current().kid}.pub") == 0o644
    for purpose in SYMMETRIC:
        assert len(ring.purpose(purpose).current().secret) == 32
    assert ring.signing.current().private is not None


def test_init_records_created_at_and_live_keys_in_the_manifest(keys_dir: Path) -> None:
    """The manifest lists each purpose's kids with created_at and retired=false."""
    init_keys(keys_dir, now=NOW)
    doc = manifest_doc(keys_dir)
    assert doc["version"] == 1
    keys = doc["keys"]
    assert isinstance(keys, dict)
    assert set(keys) == {p.value for p in Purpose}
    for entries in keys.values():
        assert entries[0]["created_at"] == "2025-06-15T15:06:40Z"
        assert entries[0]["retired"] is False


def test_init_is_idempotent(ring_dir: Path) -> None:
    """A second init keeps every existing key and leaves the manifest untouched."""
    before = (ring_dir / MANIFEST).read_bytes()
    again = init_keys(ring_dir, now=NOW + 100)
    assert (ring_dir / MANIFEST).read_bytes() == before
    assert kids(again, Purpose.BROKER) == [first_kid(ring_dir, Purpose.BROKER)]


def test_init_adds_only_missing_purposes(ring_dir: Path) -> None:
    """init creates a key for a purpose the manifest lacks and keeps the others."""
    broker = first_kid(ring_dir, Purpose.BROKER)
    doc = manifest_doc(ring_dir)
    del doc["keys"]["audit-worker"]  # type: ignore[attr-defined]
    write_manifest(ring_dir, doc)
    ring = init_keys(ring_dir, now=NOW)
    assert kids(ring, Purpose.BROKER) == [broker]
    assert len(ring.audit_worker) == 1


def test_init_uses_the_clock_when_now_is_not_given(keys_dir: Path) -> None:
    """Without now, kids carry the current time."""
    ring = init_keys(keys_dir)
    assert valid_kid(ring.broker.current().kid)


def test_init_tightens_an_existing_open_folder(keys_dir: Path) -> None:
    """A keys folder created beforehand with a loose mode is made 0700."""
    keys_dir.mkdir(parents=True, mode=0o755)
    keys_dir.chmod(0o755)
    init_keys(keys_dir, now=NOW)
    assert mode_of(keys_dir) == 0o700


def test_keyring_repr_shows_no_material(ring_dir: Path) -> None:
    """repr of the ring names kids only, never a secret in any encoding."""
    ring = load_keys(ring_dir, role="gateway")
    text = repr(ring)
    secret = ring.broker.current().secret
    assert ring.broker.current().kid in text
    assert b64(secret) not in text
    assert secret.hex() not in text
    assert repr(secret) not in text


def test_rotate_adds_a_newer_key_and_keeps_the_old_one_live(ring_dir: Path) -> None:
    """After rotate the newest key is current and the previous one still opens."""
    old = first_kid(ring_dir, Purpose.BROKER)
    ring = rotate_keys(ring_dir, now=NOW + 60)
    assert kids(ring, Purpose.BROKER)[0] == old
    assert ring.broker.current().kid != old
    assert ring.broker.get(old).kid == old
    assert len(ring.signing) == 2


def test_rotate_only_the_given_purposes(ring_dir: Path) -> None:
    """rotate with a purpose list leaves the other purposes alone."""
    ring = rotate_keys(ring_dir, [Purpose.VAULT], now=NOW + 60)
    assert len(ring.vault) == 2
    assert len(ring.broker) == 1


def test_rotate_accepts_purpose_names_as_strings(ring_dir: Path) -> None:
    """A plain "signing" string still makes an Ed25519 key pair."""
    ring = rotate_keys(ring_dir, ["signing"], now=NOW + 60)  # type: ignore[list-item]
    assert ring.signing.current().private is not None
    assert len(ring.signing) == 2


def test_rotate_without_a_ring_is_refused(keys_dir: Path) -> None:
    """rotate on an empty folder says the manifest is missing."""
    err = refused("missing_key", rotate_keys, keys_dir, now=NOW)
    assert MANIFEST in err.message


def test_retire_marks_the_key_retired(ring_dir: Path) -> None:
    """A retired key stays in the ring but get() refuses it as retired."""
    old = first_kid(ring_dir, Purpose.BROKER)
    rotate_keys(ring_dir, [Purpose.BROKER], now=NOW + 60)
    ring = retire_key(ring_dir, old)
    with pytest.raises(KeyRetiredError):
        ring.broker.get(old)
    assert ring.broker.current().kid != old
    assert [i.retired for i in list_keys(ring_dir) if i.kid == old] == [True]


def test_retire_twice_is_a_no_op(ring_dir: Path) -> None:
    """Retiring an already retired key changes nothing."""
    old = first_kid(ring_dir, Purpose.AUDIT_GATEWAY)
    rotate_keys(ring_dir, [Purpose.AUDIT_GATEWAY], now=NOW + 60)
    retire_key(ring_dir, old)
    before = (ring_dir / MANIFEST).read_bytes()
    retire_key(ring_dir, old)
    assert (ring_dir / MANIFEST).read_bytes() == before


def test_retire_the_last_live_key_is_refused(ring_dir: Path) -> None:
    """The only live key of a purpose cannot be retired."""
    only = first_kid(ring_dir, Purpose.TOKEN)
    err = refused("last_live_key", retire_key, ring_dir, only)
    assert "rotate first" in err.message


def test_retire_an_unknown_kid_is_refused(ring_dir: Path) -> None:
    """Retiring a kid the manifest does not list is refused."""
    refused("unknown_kid", retire_key, ring_dir, "broker-nope")


def test_init_replaces_a_purpose_whose_keys_are_all_retired(ring_dir: Path) -> None:
    """If every key of a purpose is retired (hand-edited manifest), init adds a live one."""
    doc = manifest_doc(ring_dir)
    doc["keys"]["vault"][0]["retired"] = True  # type: ignore[index]
    write_manifest(ring_dir, doc)
    refused("missing_key", load_keys, ring_dir, role="gateway")
    ring = init_keys(ring_dir, now=NOW)
    assert len(ring.vault.live()) == 1


# ---------------------------------------------------------------- roles and listing


def test_worker_gets_public_signing_keys_and_no_token_keys(ring_dir: Path) -> None:
    """A worker ring holds broker/vault/audit secrets, public signing keys only, no token keys."""
    ring = load_keys(ring_dir, role="worker")
    assert ring.signing.current().private is None
    assert len(ring.token) == 0
    assert len(ring.broker) == len(ring.vault) == len(ring.audit) == 1


def test_worker_runs_without_any_signing_private_key(ring_dir: Path) -> None:
    """Deleting every signing .key file does not stop a worker from loading."""
    for path in ring_dir.glob("signing-*.key"):
        path.unlink()
    ring = load_keys(ring_dir, role="worker")
    gateway_pub = ring.signing.current().public.public_bytes_raw()
    assert len(gateway_pub) == 32


def test_worker_never_opens_the_signing_private_key(ring_dir: Path) -> None:
    """A worker ignores an exposed signing private key file (it never reads it)."""
    for path in ring_dir.glob("signing-*.key"):
        path.chmod(0o644)
    load_keys(ring_dir, role="worker")
    refused("key_exposed", load_keys, ring_dir, role="gateway")


def test_list_keys_gives_fingerprints_and_never_material(ring_dir: Path) -> None:
    """list_keys returns kid, purpose, created_at, retired and a 16-hex fingerprint."""
    ring = load_keys(ring_dir, role="gateway")
    infos = list_keys(ring_dir)
    assert [i.purpose for i in infos] == list(Purpose)
    for info in infos:
        assert len(info.fingerprint) == 16
        int(info.fingerprint, 16)
        assert info.created_at == "2025-06-15T15:06:40Z"
        assert not info.retired
    broker = next(i for i in infos if i.purpose is Purpose.BROKER)
    assert ring.broker.current().secret.hex()[:16] != broker.fingerprint
    assert b64(ring.broker.current().secret) not in repr(infos)


# ---------------------------------------------------------------- keys folder refusals


def test_load_missing_folder_is_refused(keys_dir: Path) -> None:
    """A keys folder that does not exist is refused with the init command as the fix."""
    err = refused("missing_key", load_keys, keys_dir, role="gateway")
    assert "taskgate keys init" in err.message


def test_load_open_folder_is_refused(ring_dir: Path) -> None:
    """A keys folder others may list is refused, naming chmod 700."""
    ring_dir.chmod(0o755)
    err = refused("key_exposed", load_keys, ring_dir, role="gateway")
    assert "chmod 700" in err.message


def test_load_missing_manifest_is_refused(ring_dir: Path) -> None:
    """A keys folder without keyring.json is refused naming the file."""
    (ring_dir / MANIFEST).unlink()
    err = refused("missing_key", load_keys, ring_dir, role="worker")
    assert MANIFEST in err.message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602])
def test_load_manifest_open_to_others_is_refused(ring_dir: Path, mode: int) -> None:
    """A manifest group or others may read or write is refused."""
    (ring_dir / MANIFEST).chmod(mode)
    err = refused("key_exposed", load_keys, ring_dir, role="gateway")
    assert MANIFEST in err.message
    assert "chmod 600" in err.message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_load_key_file_open_to_others_is_refused(ring_dir: Path, mode: int) -> None:
    """A secret key file group or others may read is refused and the fix says rotate."""
    kid = first_kid(ring_dir, Purpose.BROKER)
    (ring_dir / f"{kid}.key").chmod(mode)
    err = refused("key_exposed", load_keys, ring_dir, role="gateway")
    assert f"{kid}.key" in err.message
    assert "rotate" in err.message


def test_load_public_key_writable_by_others_is_refused(ring_dir: Path) -> None:
    """A .pub file others may write (and so swap) is refused; 0644 is accepted."""
    kid = first_kid(ring_dir, Purpose.SIGNING)
    (ring_dir / f"{kid}.pub").chmod(0o666)
    err = refused("key_exposed", load_keys, ring_dir, role="worker")
    assert "chmod 644" in err.message


def test_load_missing_key_file_is_refused(ring_dir: Path) -> None:
    """A manifest entry whose key file is gone is refused naming the file."""
    kid = first_kid(ring_dir, Purpose.VAULT)
    (ring_dir / f"{kid}.key").unlink()
    err = refused("missing_key", load_keys, ring_dir, role="gateway")
    assert f"{kid}.key" in err.message


def test_load_missing_public_key_file_is_refused_for_a_worker(ring_dir: Path) -> None:
    """A worker needs the .pub file of each signing key."""
    kid = first_kid(ring_dir, Purpose.SIGNING)
    (ring_dir / f"{kid}.pub").unlink()
    refused("missing_key", load_keys, ring_dir, role="worker")


def test_load_unreadable_key_file_is_refused(ring_dir: Path) -> None:
    """A key path that cannot be opened (a symlink loop) is refused as unreadable."""
    kid = first_kid(ring_dir, Purpose.AUDIT_GATEWAY)
    path = ring_dir / f"{kid}.key"
    path.unlink()
    path.symlink_to(path)
    err = refused("unreadable", load_keys, ring_dir, role="gateway")
    assert f"{kid}.key" in err.message


def test_load_key_path_that_is_a_folder_is_refused(ring_dir: Path) -> None:
    """A key path that is not a regular file is refused."""
    kid = first_kid(ring_dir, Purpose.AUDIT_GATEWAY)
    path = ring_dir / f"{kid}.key"
    path.unlink()
    path.mkdir(mode=0o700)
    refused("bad_key_file", load_keys, ring_dir, role="gateway")


def replace_material(ring_dir: Path, name: str, content: bytes) -> None:
    path = ring_dir / name
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)


@pytest.mark.parametrize("content", [b"not base64!!\n", b"QUJD=QUJD\n", "é".encode()])
def test_load_malformed_base64_is_refused(ring_dir: Path, content: bytes) -> None:
    """A key file that is not strict ASCII base64 is refused naming the file."""
    kid = first_kid(ring_dir, Purpose.BROKER)
    replace_material(ring_dir, f"{kid}.key", content)
    err = refused("bad_base64", load_keys, ring_dir, role="gateway")
    assert f"{kid}.key" in err.message


def test_load_short_key_is_refused_without_showing_it(ring_dir: Path) -> None:
    """A 128-bit key is refused as too short; the message names the file, not the material."""
    kid = first_kid(ring_dir, Purpose.TOKEN)
    short = os.urandom(16)
    replace_material(ring_dir, f"{kid}.key", b64(short).encode())
    err = refused("key_too_short", load_keys, ring_dir, role="gateway")
    assert f"{kid}.key" in err.message
    assert "128 bits" in err.message
    assert b64(short) not in str(err)


def test_load_aes_key_longer_than_256_bits_is_refused(ring_dir: Path) -> None:
    """Broker and vault keys must be exactly 256 bits (AES-256)."""
    kid = first_kid(ring_dir, Purpose.VAULT)
    replace_material(ring_dir, f"{kid}.key", b64(os.urandom(48)).encode())
    err = refused("bad_key_length", load_keys, ring_dir, role="gateway")
    assert "exactly 256" in err.message


def test_load_accepts_a_longer_hmac_key(ring_dir: Path) -> None:
    """Audit and token (HMAC) keys may be longer than 256 bits."""
    kid = first_kid(ring_dir, Purpose.AUDIT_GATEWAY)
    long = os.urandom(64)
    replace_material(ring_dir, f"{kid}.key", b64(long).encode())
    assert load_keys(ring_dir, role="gateway").audit.current().secret == long


@pytest.mark.parametrize(("size", "reason"), [(16, "key_too_short"), (48, "bad_key_length")])
def test_load_signing_key_of_wrong_length_is_refused(
    ring_dir: Path, size: int, reason: str
) -> None:
    """An Ed25519 private key must be exactly 32 raw bytes."""
    kid = first_kid(ring_dir, Purpose.SIGNING)
    replace_material(ring_dir, f"{kid}.key", b64(os.urandom(size)).encode())
    refused(reason, load_keys, ring_dir, role="gateway")


def test_load_mismatched_signing_public_key_is_refused(ring_dir: Path) -> None:
    """A .pub file that is not the public half of the .key file is refused."""
    kid = first_kid(ring_dir, Purpose.SIGNING)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    (ring_dir / f"{kid}.pub").write_text(b64(other))
    err = refused("key_mismatch", load_keys, ring_dir, role="gateway")
    assert f"{kid}.pub" in err.message


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        [],
        {"version": 2, "keys": {}},
        {"version": 1},
        {"version": 1, "keys": []},
        {"version": 1, "keys": {"bogus": []}},
        {"version": 1, "keys": {"broker": {}}},
        {"version": 1, "keys": {"broker": ["broker-1"]}},
        {"version": 1, "keys": {"broker": [{"kid": "broker-1", "retired": False}]}},
        {"version": 1, "keys": {"broker": [{"kid": 1, "created_at": "x", "retired": False}]}},
        {"version": 1, "keys": {"broker": [{"kid": "broker-1", "created_at": "x", "retired": 0}]}},
    ],
)
def test_load_malformed_manifest_is_refused(ring_dir: Path, doc: object) -> None:
    """A manifest that is not the expected JSON shape is refused naming the file."""
    if isinstance(doc, str):
        (ring_dir / MANIFEST).write_text(doc)
    else:
        write_manifest(ring_dir, doc)
    err = refused("bad_manifest", load_keys, ring_dir, role="gateway")
    assert MANIFEST in err.message


@pytest.mark.parametrize("kid", ["../../etc/passwd", "vault-1", "broker.1", ""])
def test_load_manifest_with_bad_kid_is_refused(ring_dir: Path, kid: str) -> None:
    """A kid that is malformed or names another purpose is refused (never used as a path)."""
    write_manifest(
        ring_dir,
        {"version": 1, "keys": {"broker": [{"kid": kid, "created_at": "x", "retired": False}]}},
    )
    refused("bad_kid", load_keys, ring_dir, role="gateway")


def test_load_manifest_missing_a_purpose_is_refused(ring_dir: Path) -> None:
    """A ring without any key of a needed purpose is refused naming the purpose."""
    doc = manifest_doc(ring_dir)
    del doc["keys"]["signing"]  # type: ignore[attr-defined]
    write_manifest(ring_dir, doc)
    err = refused("missing_key", load_keys, ring_dir, role="worker")
    assert "signing" in err.message


def test_worker_does_not_need_token_keys(ring_dir: Path) -> None:
    """A manifest without token keys still loads for a worker, not for the gateway."""
    doc = manifest_doc(ring_dir)
    del doc["keys"]["token"]  # type: ignore[attr-defined]
    write_manifest(ring_dir, doc)
    load_keys(ring_dir, role="worker")
    refused("missing_key", load_keys, ring_dir, role="gateway")


# ---------------------------------------------------------------- environment


def gateway_env() -> tuple[dict[str, str], dict[str, bytes]]:
    """Variables for every purpose plus the raw material, keyed by kid."""
    material: dict[str, bytes] = {}
    env: dict[str, str] = {}
    for purpose in SYMMETRIC:
        entries = []
        for n in (1, 2):
            kid, secret = f"{purpose}-{n}", os.urandom(32)
            material[kid] = secret
            entries.append(f"{kid}:{b64(secret)}")
        env[env_var(purpose)] = ",".join(entries)
    private = Ed25519PrivateKey.generate()
    material["signing-1"] = private.private_bytes_raw()
    env["TASKGATE_KEY_SIGNING"] = f"signing-1:{b64(private.private_bytes_raw())}"
    env["TASKGATE_KEY_SIGNING_PUBLIC"] = (
        f" signing-1:{b64(private.public_key().public_bytes_raw())} , "
    )
    return env, material


def test_env_gateway_loads_every_purpose_in_order() -> None:
    """Each TASKGATE_KEY_<PURPOSE> lists kids oldest -> newest; the last is current."""
    env, material = gateway_env()
    ring = load_keys_from_env(env, role="gateway")
    assert kids(ring, Purpose.BROKER) == ["broker-1", "broker-2"]
    assert ring.broker.current().secret == material["broker-2"]
    assert ring.token.current().kid == "token-2"
    signing = ring.signing.current()
    assert signing.private is not None
    assert signing.private.private_bytes_raw() == material["signing-1"]


def test_env_gateway_does_not_need_the_public_variable() -> None:
    """Without TASKGATE_KEY_SIGNING_PUBLIC the gateway derives the public key."""
    env, _ = gateway_env()
    del env["TASKGATE_KEY_SIGNING_PUBLIC"]
    assert load_keys_from_env(env, role="gateway").signing.current().private is not None


def test_env_worker_reads_public_keys_only() -> None:
    """A worker reads TASKGATE_KEY_SIGNING_PUBLIC and never parses TASKGATE_KEY_SIGNING."""
    env, _ = gateway_env()
    env["TASKGATE_KEY_SIGNING"] = "garbage without a colon"
    env["TASKGATE_KEY_TOKEN"] = "also garbage"
    ring = load_keys_from_env(env, role="worker")
    assert ring.signing.current().private is None
    assert len(ring.token) == 0


def test_env_worker_without_public_keys_is_refused() -> None:
    """A worker with no TASKGATE_KEY_SIGNING_PUBLIC is refused naming signing keys."""
    env, _ = gateway_env()
    del env["TASKGATE_KEY_SIGNING_PUBLIC"]
    err = refused("missing_key", load_keys_from_env, env, role="worker")
    assert "signing" in err.message


def test_env_missing_purpose_is_refused() -> None:
    """A missing TASKGATE_KEY_VAULT is refused with the variable pattern as the fix."""
    env, _ = gateway_env()
    del env["TASKGATE_KEY_VAULT"]
    err = refused("missing_key", load_keys_from_env, env, role="gateway")
    assert "vault" in err.message
    assert "TASKGATE_KEY_<PURPOSE>" in err.message


def test_env_entry_without_a_kid_is_refused_without_showing_it() -> None:
    """An entry that is not kid:base64 is refused naming the variable and entry number."""
    env, _ = gateway_env()
    secret = b64(os.urandom(32))
    env["TASKGATE_KEY_AUDIT_GATEWAY"] = secret
    err = refused("bad_key_entry", load_keys_from_env, env, role="gateway")
    assert "TASKGATE_KEY_AUDIT_GATEWAY entry 1" in err.message
    assert secret not in str(err)


def test_env_malformed_base64_is_refused() -> None:
    """An entry whose material is not base64 is refused naming the variable."""
    env, _ = gateway_env()
    env["TASKGATE_KEY_BROKER"] += ",broker-3:%%%"
    err = refused("bad_base64", load_keys_from_env, env, role="gateway")
    assert "TASKGATE_KEY_BROKER entry 3" in err.message


def test_env_bad_kid_is_refused() -> None:
    """A kid that does not start with its purpose is refused."""
    env, _ = gateway_env()
    env["TASKGATE_KEY_BROKER"] = f"vault-9:{b64(os.urandom(32))}"
    refused("bad_kid", load_keys_from_env, env, role="gateway")


def test_env_short_key_is_refused() -> None:
    """A key under 256 bits from the environment is refused naming the variable."""
    env, _ = gateway_env()
    env["TASKGATE_KEY_TOKEN"] = f"token-1:{b64(os.urandom(31))}"
    err = refused("key_too_short", load_keys_from_env, env, role="gateway")
    assert "TASKGATE_KEY_TOKEN" in err.message


def test_env_public_key_mismatch_is_refused() -> None:
    """A public key that does not match the private key of the same kid is refused."""
    env, _ = gateway_env()
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    env["TASKGATE_KEY_SIGNING_PUBLIC"] = f"signing-1:{b64(other)}"
    err = refused("key_mismatch", load_keys_from_env, env, role="gateway")
    assert "TASKGATE_KEY_SIGNING_PUBLIC" in err.message


def test_env_public_key_without_private_key_is_refused_on_the_gateway() -> None:
    """On the gateway every public signing key needs its private key."""
    env, _ = gateway_env()
    extra = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    env["TASKGATE_KEY_SIGNING_PUBLIC"] += f",signing-2:{b64(extra)}"
    refused("key_mismatch", load_keys_from_env, env, role="gateway")


def test_env_retired_kids_are_marked_retired() -> None:
    """TASKGATE_KEYS_RETIRED retires the kids it lists; purposes a role skips are ignored."""
    env, _ = gateway_env()
    env[ENV_RETIRED] = "broker-1, token-1"
    ring = load_keys_from_env(env, role="gateway")
    with pytest.raises(KeyRetiredError):
        ring.broker.get("broker-1")
    assert ring.broker.current().kid == "broker-2"
    worker = load_keys_from_env(env, role="worker")
    assert [k.retired for k in worker.broker] == [True, False]


def test_env_retiring_an_unknown_kid_is_refused() -> None:
    """A retired kid that matches no key is refused (a typo would leave a key live)."""
    env, _ = gateway_env()
    env[ENV_RETIRED] = "broker-7"
    err = refused("unknown_kid", load_keys_from_env, env, role="gateway")
    assert ENV_RETIRED in err.message


def test_env_retiring_a_kid_without_purpose_is_refused() -> None:
    """A retired kid whose prefix is no purpose is refused."""
    env, _ = gateway_env()
    env[ENV_RETIRED] = "nothing-1"
    refused("bad_kid", load_keys_from_env, env, role="gateway")


def test_env_all_keys_of_a_purpose_retired_is_refused() -> None:
    """Retiring every key of a purpose leaves it missing."""
    env, _ = gateway_env()
    env[ENV_RETIRED] = "audit-gateway-1 audit-gateway-2"
    refused("missing_key", load_keys_from_env, env, role="gateway")


# ---------------------------------------------------------------- secrets folder


def secrets_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    _, material = gateway_env()
    folder = tmp_path / "secrets"
    folder.mkdir()
    for kid, raw in material.items():
        put(folder, kid, b64(raw))
    pub = Ed25519PrivateKey.from_private_bytes(material["signing-1"]).public_key()
    put(folder, "signing-1.pub", b64(pub.public_bytes_raw()), 0o444)
    (folder / "..data").mkdir()  # Kubernetes' internal link folder: skipped
    return folder, material


def put(folder: Path, name: str, content: str, mode: int = 0o400) -> None:
    path = folder / name
    path.write_text(content + "\n")
    path.chmod(mode)


def test_files_gateway_loads_every_purpose(tmp_path: Path) -> None:
    """A secrets folder with one file per kid loads in kid order."""
    folder, material = secrets_folder(tmp_path)
    ring = load_keys_from_files(folder, role="gateway")
    assert kids(ring, Purpose.VAULT) == ["vault-1", "vault-2"]
    assert ring.vault.current().secret == material["vault-2"]
    assert ring.signing.current().private is not None


def test_files_gateway_derives_the_public_key(tmp_path: Path) -> None:
    """Without a .pub file the gateway derives the public key from the private one."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "signing-1.pub").unlink()
    assert load_keys_from_files(folder, role="gateway").signing.current().kid == "signing-1"


def test_files_worker_needs_no_signing_private_key(tmp_path: Path) -> None:
    """A worker loads from .pub files only, even with the private key file absent."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "signing-1").unlink()
    ring = load_keys_from_files(folder, role="worker")
    assert ring.signing.current().private is None
    assert len(ring.token) == 0


def test_files_worker_ignores_an_exposed_signing_private_key(tmp_path: Path) -> None:
    """A worker never opens a signing private key file, so its mode does not matter there."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "signing-1").chmod(0o644)
    load_keys_from_files(folder, role="worker")
    refused("key_exposed", load_keys_from_files, folder, role="gateway")


def test_files_gateway_without_signing_private_key_is_refused(tmp_path: Path) -> None:
    """The gateway refuses a signing kid with only a public key."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "signing-1").unlink()
    err = refused("missing_key", load_keys_from_files, folder, role="gateway")
    assert "signing-1.pub" in err.message


def test_files_mismatched_public_key_is_refused(tmp_path: Path) -> None:
    """A .pub that does not match the private key file is refused."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "signing-1.pub").chmod(0o600)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    put(folder, "signing-1.pub", b64(other), 0o444)
    refused("key_mismatch", load_keys_from_files, folder, role="gateway")


def test_files_retired_file_marks_keys_retired(tmp_path: Path) -> None:
    """A `retired` file lists kids to retire, one per line."""
    folder, _ = secrets_folder(tmp_path)
    put(folder, "retired", "vault-1\nbroker-1\n", 0o444)
    ring = load_keys_from_files(folder, role="worker")
    assert [k.retired for k in ring.vault] == [True, False]


def test_files_retiring_an_unknown_kid_is_refused(tmp_path: Path) -> None:
    """A `retired` file naming a kid with no key is refused."""
    folder, _ = secrets_folder(tmp_path)
    put(folder, "retired", "vault-3", 0o444)
    err = refused("unknown_kid", load_keys_from_files, folder, role="gateway")
    assert "retired" in err.message


def test_files_pub_for_a_symmetric_key_is_refused(tmp_path: Path) -> None:
    """Only signing keys may have a .pub file."""
    folder, _ = secrets_folder(tmp_path)
    put(folder, "broker-1.pub", b64(os.urandom(32)))
    refused("bad_key_file", load_keys_from_files, folder, role="gateway")


@pytest.mark.parametrize("name", ["README", "tls.crt", "broker"])
def test_files_unexpected_file_is_refused(tmp_path: Path, name: str) -> None:
    """A file whose name is not a kid with a purpose prefix is refused."""
    folder, _ = secrets_folder(tmp_path)
    put(folder, name, "x")
    refused("bad_kid", load_keys_from_files, folder, role="gateway")


def test_files_exposed_key_is_refused(tmp_path: Path) -> None:
    """A secrets file group or others may read is refused with the chmod fix."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "audit-gateway-1").chmod(0o444)
    err = refused("key_exposed", load_keys_from_files, folder, role="gateway")
    assert "audit-gateway-1" in err.message


def test_files_missing_folder_is_refused(tmp_path: Path) -> None:
    """A secrets folder that does not exist is refused."""
    refused("missing_key", load_keys_from_files, tmp_path / "nope", role="gateway")


def test_files_missing_purpose_is_refused(tmp_path: Path) -> None:
    """A secrets folder without any vault key is refused naming the fix."""
    folder, _ = secrets_folder(tmp_path)
    (folder / "vault-1").unlink()
    (folder / "vault-2").unlink()
    err = refused("missing_key", load_keys_from_files, folder, role="worker")
    assert "vault" in err.message


def test_a_key_set_refuses_a_malformed_key_id_and_looks_up_by_exact_id() -> None:
    """Every key in a set has a well-formed id (signing keys too), so a lookup that finds
    an equal id needs no shape check; a miss still says whether the id was malformed."""
    public = Ed25519PrivateKey.generate().public_key()
    refused("bad_kid", KeySet, Purpose.SIGNING, [SigningKey("../etc/passwd", public)])
    good = SigningKey("signing-20260101T000000Z-0123abcd", public)
    keys = KeySet(Purpose.SIGNING, [good])
    assert keys.get(good.kid) is good
    refused("bad_kid", keys.get, "../etc/passwd")
    refused("unknown_kid", keys.get, "signing-20260101T000000Z-ffffffff")
