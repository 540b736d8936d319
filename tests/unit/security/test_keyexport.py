"""Per-role key bundles: exactly the keys a role loads, and nothing a worker must not hold."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from security.errors import KeyRingError
from security.keyexport import bundle_files, export_keys
from security.keyfiles import purpose_of
from security.keys import Purpose, Role
from security.keystore import MANIFEST, init_keys, load_keys, retire_key, rotate_keys
from taskgate.cli.keys import app as keys_app

NOW = 1_750_000_000.0

# What each role's bundle must hold, by purpose; signing as (public, private).
EXPECTED: dict[Role, tuple[set[Purpose], bool]] = {
    "worker": ({Purpose.BROKER, Purpose.VAULT, Purpose.AUDIT_WORKER}, False),
    "gateway": (set(Purpose) - {Purpose.SIGNING}, True),
    "operator": (set(Purpose) - {Purpose.SIGNING}, True),
}


@pytest.fixture
def full(tmp_path: Path) -> Path:
    keys = tmp_path / "state" / "keys"
    init_keys(keys, now=NOW)
    return keys


def _purposes_of_files(folder: Path) -> tuple[set[str], set[str]]:
    names = {p.name for p in folder.iterdir()}
    return {n for n in names if n.endswith(".key")}, {n for n in names if n.endswith(".pub")}


@pytest.mark.parametrize("role", ["worker", "gateway", "operator"])
def test_export_holds_exactly_the_keys_of_the_role(full: Path, tmp_path: Path, role: Role) -> None:
    """Each bundle holds the role's purposes' key files (signing private key only off a
    worker), owner-only modes, and a manifest naming the role; it loads as that role."""
    dest = tmp_path / "bundles" / role
    export_keys(full, dest, role=role)
    symmetric, signing_private = EXPECTED[role]
    keys, pubs = _purposes_of_files(dest)
    prefixes = {str(purpose_of(name.removesuffix(".key"), name)) for name in keys}
    expected = {str(p) for p in symmetric} | ({"signing"} if signing_private else set())
    assert prefixes == expected
    assert len(pubs) == 1
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for path in dest.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads((dest / MANIFEST).read_text())
    assert doc["role"] == role
    assert sorted(bundle_files(dest, role)) == sorted(p.name for p in dest.iterdir())
    ring = load_keys(dest, role=role)
    assert ring.role == role
    assert len(ring.audit) == 1


def test_worker_bundle_holds_no_private_signing_token_state_or_other_audit_key(
    full: Path, tmp_path: Path
) -> None:
    """A worker's bundle has no file of a signing private key, a token, state, or the
    gateway's or operator's audit key, and no other file than its manifest and keys."""
    dest = tmp_path / "worker"
    export_keys(full, dest, role="worker")
    names = {p.name for p in dest.iterdir()}
    for forbidden in ("token-", "state-", "audit-gateway-", "audit-operator-"):
        assert not any(n.startswith(forbidden) for n in names), forbidden
    assert not any(n.startswith("signing-") and n.endswith(".key") for n in names)
    full_ring = load_keys(full, role="operator")
    text = "".join(p.read_text() for p in dest.iterdir())
    secrets = [*full_ring.token, *full_ring.state, *full_ring.audit_gateway]
    private = full_ring.signing.current().private
    assert private is not None
    for key in secrets:
        assert key.secret.hex() not in text
    assert not (set(names) - {MANIFEST} - {n for n in names if n.endswith((".key", ".pub"))})


@pytest.mark.parametrize(
    ("made_for", "loaded_as"),
    [("worker", "gateway"), ("gateway", "worker"), ("worker", "operator")],
)
def test_a_bundle_loads_as_its_role_only(
    full: Path, tmp_path: Path, made_for: Role, loaded_as: Role
) -> None:
    """Loading a bundle as another role is refused, naming both roles and the fix."""
    dest = tmp_path / made_for
    export_keys(full, dest, role=made_for)
    with pytest.raises(KeyRingError) as info:
        load_keys(dest, role=loaded_as)
    assert info.value.reason == "wrong_role"
    assert f"a {made_for} key bundle" in info.value.message
    assert f"--role {loaded_as}" in info.value.message


def test_a_bundle_missing_a_needed_purpose_is_refused(full: Path, tmp_path: Path) -> None:
    """A worker bundle whose vault keys were removed does not load, naming the purpose."""
    dest = tmp_path / "worker"
    export_keys(full, dest, role="worker")
    doc = json.loads((dest / MANIFEST).read_text())
    del doc["keys"]["vault"]
    (dest / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(KeyRingError) as info:
        load_keys(dest, role="worker")
    assert info.value.reason == "missing_key"
    assert "vault" in info.value.message
    assert "keys export --role worker" in info.value.message


def test_re_export_replaces_the_bundle_and_keeps_retired_flags(full: Path, tmp_path: Path) -> None:
    """After a rotation and a retirement, exporting again leaves the new keys, the retired
    flag, and no stale file behind."""
    dest = tmp_path / "worker"
    export_keys(full, dest, role="worker")
    old = load_keys(full, role="operator").broker.current().kid
    rotate_keys(full, [Purpose.BROKER], now=NOW + 60)
    retire_key(full, old)
    (dest / "stray.key").write_text("x")
    ring = export_keys(full, dest, role="worker")
    assert [k.retired for k in ring.broker] == [True, False]
    assert not (dest / "stray.key").exists()
    assert not list(dest.parent.glob(".worker.*"))


def test_export_refuses_a_folder_that_is_not_a_bundle(full: Path, tmp_path: Path) -> None:
    """A non-empty destination without a manifest is never overwritten."""
    dest = tmp_path / "elsewhere"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(KeyRingError) as info:
        export_keys(full, dest, role="worker")
    assert info.value.reason == "bad_destination"
    assert (dest / "notes.txt").read_text() == "mine"


def test_bundles_are_never_a_source_or_rotated_in_place(full: Path, tmp_path: Path) -> None:
    """Exporting from a bundle, or rotating/initialising one, is refused."""
    dest = tmp_path / "gateway"
    export_keys(full, dest, role="gateway")
    calls: list[Callable[[], object]] = [
        lambda: export_keys(dest, tmp_path / "w", role="worker"),
        lambda: rotate_keys(dest),
        lambda: init_keys(dest),
    ]
    for call in calls:
        with pytest.raises(KeyRingError) as info:
            call()
        assert info.value.reason == "bundle"


def test_init_adds_per_role_audit_keys_to_a_folder_with_the_legacy_audit_key(full: Path) -> None:
    """A manifest that still lists the shared `audit` key gets the per-role audit keys from
    init; the legacy entry is kept and never loaded."""
    doc = json.loads((full / MANIFEST).read_text())
    for name in ("audit-gateway", "audit-worker", "audit-operator"):
        del doc["keys"][name]
    doc["keys"]["audit"] = [
        {"kid": "audit-20250101T000000Z-0a0b0c0d", "created_at": "x", "retired": False}
    ]
    (full / MANIFEST).write_text(json.dumps(doc))
    ring = init_keys(full, now=NOW)
    assert len(ring.audit_gateway) == len(ring.audit_worker) == len(ring.audit_operator) == 1
    assert "audit" in json.loads((full / MANIFEST).read_text())["keys"]


def test_keys_export_command_writes_the_bundle(full: Path, tmp_path: Path) -> None:
    """`taskgate keys export --role worker DIR` writes a worker bundle and says where."""
    dest = tmp_path / "cli-worker"
    result = CliRunner().invoke(
        keys_app, ["export", "--role", "worker", "--keys-dir", str(full), str(dest)]
    )
    assert result.exit_code == 0, result.output
    assert "worker key bundle" in result.output
    assert load_keys(dest, role="worker").signing.current().private is None


def test_keys_export_command_refuses_an_unknown_role(full: Path, tmp_path: Path) -> None:
    """An unknown role is a usage error; nothing is written."""
    dest = tmp_path / "x"
    result = CliRunner().invoke(
        keys_app, ["export", "--role", "admin", "--keys-dir", str(full), str(dest)]
    )
    assert result.exit_code != 0
    assert not dest.exists()


def test_a_rings_audit_sets_are_the_roles_own_and_those_it_verifies_with(full: Path) -> None:
    """A worker ring appends and verifies with its own audit key only; the gateway appends
    with its own and holds every role's to verify; key_sets lists every purpose."""
    worker = load_keys(full, role="worker")
    assert worker.audit.purpose is Purpose.AUDIT_WORKER
    assert [s.purpose for s in worker.audit_keys()] == [Purpose.AUDIT_WORKER]
    gateway = load_keys(full, role="gateway")
    assert gateway.audit.purpose is Purpose.AUDIT_GATEWAY
    assert len(gateway.audit_keys()) == 3
    assert [s.purpose for s in gateway.key_sets()] == list(Purpose)
    assert [len(s) for s in worker.key_sets()].count(0) == 4  # token, state, two audits
    with pytest.raises(KeyRingError) as info:
        gateway.purpose(Purpose.SIGNING)
    assert info.value.reason == "purpose"


def test_a_manifest_naming_an_unknown_role_is_refused(full: Path) -> None:
    """A manifest whose role is not gateway, worker or operator is malformed."""
    doc = json.loads((full / MANIFEST).read_text())
    doc["role"] = "root"
    (full / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(KeyRingError) as info:
        load_keys(full, role="worker")
    assert info.value.reason == "bad_manifest"


def test_export_never_replaces_a_full_keys_folder(full: Path) -> None:
    """Exporting onto the source (or any full keys folder) is refused; nothing is lost."""
    before = sorted(p.name for p in full.iterdir())
    with pytest.raises(KeyRingError) as info:
        export_keys(full, full, role="worker")
    assert info.value.reason == "bad_destination"
    assert sorted(p.name for p in full.iterdir()) == before
    assert load_keys(full, role="operator").token.current()
