"""The console's key host settings: off by default, and refused at start-up unless they
name the key host's full keys folder and a folder of role bundles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from security.errors import ConfigError
from security.keyexport import export_keys
from security.keystore import init_keys

pytestmark = pytest.mark.integration  # the settings need the session's certificates


@pytest.fixture
def env(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The session stack's TASKGATE_* variables (certificates, Redis), set for this test."""
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    return stack_env


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    keys, roles = tmp_path / "keys", tmp_path / "roles"
    init_keys(keys)
    export_keys(keys, roles / "worker" / "keys", role="worker")
    return keys, roles


def test_rotation_from_the_console_is_off_by_default(env: dict[str, str]) -> None:
    """Neither folder is set unless asked for."""
    settings = GatewaySettings()
    assert settings.console_key_host_dir is None
    assert settings.console_roles_dir is None


def test_a_full_keys_folder_and_its_roles_are_accepted(
    env: dict[str, str], host: tuple[Path, Path]
) -> None:
    """The key host's folder and a roles folder holding bundles start the gateway."""
    keys, roles = host
    settings = GatewaySettings(console_key_host_dir=keys, console_roles_dir=roles)
    assert settings.console_key_host_dir == keys


def test_a_roles_folder_without_a_key_host_is_refused(
    env: dict[str, str], host: tuple[Path, Path]
) -> None:
    """Bundles to export from nowhere: a mistake, refused."""
    with pytest.raises(ConfigError) as caught:
        GatewaySettings(console_roles_dir=host[1])
    assert caught.value.setting == "TASKGATE_CONSOLE_ROLES_DIR"


def test_a_keys_folder_in_the_roles_folder_that_is_not_a_bundle_is_refused(
    env: dict[str, str], host: tuple[Path, Path]
) -> None:
    """roles/gateway/keys holding a full keys folder: an export would refuse to replace
    it after the rotation, so the gateway refuses to start."""
    keys, roles = host
    shutil.copytree(keys, roles / "gateway" / "keys")
    with pytest.raises(ConfigError) as caught:
        GatewaySettings(console_key_host_dir=keys, console_roles_dir=roles)
    assert caught.value.setting == "TASKGATE_CONSOLE_ROLES_DIR"
    assert "is not a gateway key bundle" in str(caught.value)


def test_a_bundle_as_the_key_host_is_refused(env: dict[str, str], host: tuple[Path, Path]) -> None:
    """A role's bundle is never rotated in place: refused, naming the setting."""
    _, roles = host
    with pytest.raises(ConfigError) as caught:
        GatewaySettings(console_key_host_dir=roles / "worker" / "keys")
    assert caught.value.setting == "TASKGATE_CONSOLE_KEY_HOST_DIR"
    assert "worker key bundle" in str(caught.value)
