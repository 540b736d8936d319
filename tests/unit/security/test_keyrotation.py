"""Rotation on the key host: the full folder only, bundles checked before any key is
written, exported again readers first, and a failure that names what is left to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from security import keyrotation
from security.errors import KeyRingError
from security.keyexport import export_keys
from security.keyrotation import (
    BUNDLE_ORDER,
    audit_target,
    check_key_host,
    check_roles_dir,
    rotate_and_export,
)
from security.keys import Purpose, Role
from security.keystore import MANIFEST, init_keys, list_keys, load_keys

NOW = 1_750_000_000.0


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    """A key host: its full keys folder and a roles folder with every role's bundle."""
    keys, roles = tmp_path / "state" / "keys", tmp_path / "state" / "roles"
    init_keys(keys, now=NOW)
    for role in BUNDLE_ORDER:
        export_keys(keys, roles / role / "keys", role=role)
    return keys, roles


def _kids(folder: Path) -> list[str]:
    return [info.kid for info in list_keys(folder)]


def _reason(call: object, *args: object) -> KeyRingError:
    with pytest.raises(KeyRingError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_the_audit_target_names_the_purposes_or_all() -> None:
    """CLI and console audit the same target: sorted purposes, or ``all``."""
    assert audit_target(None) == "all"
    assert audit_target([]) == "all"
    assert audit_target([Purpose.VAULT, Purpose.BROKER]) == "broker,vault"


def test_the_key_host_must_be_a_full_keys_folder(host: tuple[Path, Path], tmp_path: Path) -> None:
    """The full folder passes; a bundle, a missing folder and a file are refused."""
    keys, roles = host
    assert check_key_host(keys) == keys
    bundle = _reason(check_key_host, roles / "gateway" / "keys")
    assert bundle.reason == "bundle"
    assert "gateway key bundle" in bundle.message
    assert _reason(check_key_host, tmp_path / "nowhere").reason == "missing_key"
    plain = tmp_path / "file"
    plain.write_text("x")
    plain.chmod(0o600)
    assert _reason(check_key_host, plain).reason == "missing_key"


def test_the_roles_folder_lists_bundles_readers_first(host: tuple[Path, Path]) -> None:
    """Each role's bundle folder, worker then operator then gateway; roles without one are
    left out."""
    _, roles = host
    assert list(check_roles_dir(roles)) == ["worker", "operator", "gateway"]
    (roles / "operator" / "keys" / MANIFEST).unlink()
    for path in (roles / "operator" / "keys").iterdir():
        path.unlink()
    (roles / "operator" / "keys").rmdir()
    assert list(check_roles_dir(roles)) == ["worker", "gateway"]


@pytest.mark.parametrize("swap", ["not a bundle", "another role's bundle"])
def test_a_keys_folder_that_is_not_its_roles_bundle_is_refused(
    host: tuple[Path, Path], swap: str
) -> None:
    """An export would refuse to replace it after the rotation: refused up front."""
    _, roles = host
    manifest = roles / "worker" / "keys" / MANIFEST
    if swap == "not a bundle":
        manifest.unlink()
    else:
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(doc | {"role": "gateway"}))
    assert _reason(check_roles_dir, roles).reason == "bad_destination"


def test_a_missing_roles_folder_is_refused(tmp_path: Path) -> None:
    """A roles folder that is not there is a mistake, not "no bundles"."""
    assert _reason(check_roles_dir, tmp_path / "roles").reason == "missing_key"


def test_rotating_one_purpose_exports_every_bundle_again(host: tuple[Path, Path]) -> None:
    """One newer broker key in the full folder, in every role's bundle, and nothing else."""
    keys, roles = host
    before = set(_kids(keys))
    done = rotate_and_export(keys, [Purpose.BROKER], roles, now=NOW + 60)
    added = set(_kids(keys)) - before
    assert list(done.new_kids) == ["broker"]
    assert added == {done.new_kids["broker"]}
    assert done.exported == ["worker", "operator", "gateway"]
    for role in BUNDLE_ORDER:
        assert load_keys(roles / role / "keys", role=role).broker.current().kid in added


def test_rotating_everything_without_a_roles_folder_exports_nothing(
    host: tuple[Path, Path],
) -> None:
    """All purposes by default; with no roles folder no bundle is touched."""
    keys, roles = host
    worker_before = _kids(roles / "worker" / "keys")
    done = rotate_and_export(keys, None, None, now=NOW + 60)
    assert set(done.new_kids) == {str(p) for p in Purpose}
    assert done.exported == []
    assert _kids(roles / "worker" / "keys") == worker_before


def test_a_refusal_before_the_rotation_writes_no_key(host: tuple[Path, Path]) -> None:
    """A bad bundle folder stops the rotation before the key host changes at all."""
    keys, roles = host
    files = sorted(p.name for p in keys.iterdir())
    (roles / "gateway" / "keys" / MANIFEST).unlink()
    with pytest.raises(KeyRingError):
        rotate_and_export(keys, [Purpose.VAULT], roles, now=NOW + 60)
    assert sorted(p.name for p in keys.iterdir()) == files


def test_a_failed_export_names_the_bundles_left_to_export(
    host: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's export fails after the readers' succeeded: the keys stay rotated (none
    lost) and the error says which bundle is still to export."""
    keys, roles = host

    def export(src: Path, dest: Path, *, role: Role) -> object:
        if role == "gateway":
            raise PermissionError(13, "Permission denied")
        return export_keys(src, dest, role=role)

    monkeypatch.setattr(keyrotation, "export_keys", export)
    before = set(_kids(keys))
    err = _reason(rotate_and_export, keys, [Purpose.STATE], roles)
    assert err.reason == "export_failed"
    assert "still to export: gateway" in err.message
    assert "Permission denied" in err.message
    assert len(set(_kids(keys)) - before) == 1


def test_a_key_host_that_cannot_be_written_is_a_key_ring_error(
    host: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OS error while writing keys (a full or read-only disk) is reported as a
    KeyRingError naming the folder, never as a bare OSError."""
    keys, roles = host

    def rotate(*_args: object, **_kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(keyrotation, "rotate_keys", rotate)
    err = _reason(rotate_and_export, keys, None, roles)
    assert err.reason == "unwritable"
    assert str(keys) in err.message


def test_a_key_host_this_process_may_not_write_is_refused(
    host: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused up front (the tests run as root, who may write anywhere: access is denied
    here by answering as the kernel would for another user)."""
    keys, _ = host
    monkeypatch.setattr("security.keyrotation.os.access", lambda *_args: False)
    err = _reason(check_key_host, keys)
    assert err.reason == "unwritable"
    assert "not readable and writable" in err.message
