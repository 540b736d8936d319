"""Key ring storage: the keys folders that ``load_keys`` refuses.

Missing or open folders, manifests and key files, unreadable or malformed key material,
mismatched signing keys and malformed manifests; a worker needs no token keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.keys import Purpose
from security.keystore import MANIFEST, load_keys
from tests.support.key_folders import b64, first_kid, manifest_doc, refused, write_manifest

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
