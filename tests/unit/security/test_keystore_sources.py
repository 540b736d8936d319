"""Key ring storage from environment variables and from a secrets folder.

What ``load_keys_from_env`` and ``load_keys_from_files`` load for each role, and the
entries, files and retirements they refuse without showing key material.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.errors import KeyRetiredError
from security.keys import Purpose
from security.keysources import env_var
from security.keystore import ENV_RETIRED, load_keys_from_env, load_keys_from_files
from tests.support.key_folders import SYMMETRIC, b64, kids, refused

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
