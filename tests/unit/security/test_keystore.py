"""Key ring storage: making, rotating, retiring and listing keys in the keys folder.

What ``init_keys``, ``rotate_keys`` and ``retire_key`` write, which keys each role loads,
what ``list_keys`` shows, and how a key set looks keys up.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.errors import KeyRetiredError
from security.keys import KeySet, Purpose, SigningKey, valid_kid
from security.keystore import MANIFEST, init_keys, list_keys, load_keys, retire_key, rotate_keys
from tests.support.key_folders import (
    NOW,
    SYMMETRIC,
    b64,
    first_kid,
    kids,
    manifest_doc,
    refused,
    write_manifest,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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
