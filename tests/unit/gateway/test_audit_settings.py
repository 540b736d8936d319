"""The audit settings refuse values that would not mean what they say, at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from security.errors import ConfigError


@pytest.fixture
def env(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The session stack's TASKGATE_* variables (certificates, Redis), set for this test."""
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    return stack_env


@pytest.mark.integration
def test_archive_and_anchor_paths_default_under_the_state_folder(env: dict[str, str]) -> None:
    """Archive in <state>/audit-archive; the anchor file inside it; both can be set."""
    settings = GatewaySettings()
    state = Path(env["TASKGATE_STATE_DIR"])
    assert settings.archive_dir == state / "audit-archive"
    assert settings.anchor_file == state / "audit-archive" / "checkpoints.jsonl"
    moved = GatewaySettings(audit_anchor_file=Path("/srv/anchors.jsonl"))
    assert moved.anchor_file == Path("/srv/anchors.jsonl")


@pytest.mark.integration
@pytest.mark.parametrize(
    "options",
    [
        {"audit_retention": "forever"},
        {"audit_retention": "0"},
        {"audit_verify_rate_limit": "lots"},
    ],
)
def test_bad_audit_settings_are_refused(env: dict[str, str], options: dict[str, str]) -> None:
    """A retention or a verify rate limit that does not parse stops the start (ConfigError)."""
    with pytest.raises(ConfigError):
        GatewaySettings(**options)  # type: ignore[arg-type]
