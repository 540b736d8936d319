"""Every Redis Lua script is a ``.lua`` file read by ``security.lua``; none is inline Python."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from security.lua import fill_fields, lua_script

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "workers", "security")
# A module loading a script: lua_script("<package>", "<name>.lua").
_LOAD = re.compile(r"""lua_script\(\s*"([a-z_.]+)",\s*"([a-z_]+\.lua)"\s*\)""")


def _sources() -> list[Path]:
    """Every Python file of the project outside tests/ (and outside hidden folders)."""
    return [
        path
        for path in ROOT.rglob("*.py")
        if not {"tests", "build"} & set(path.relative_to(ROOT).parts)
        and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    ]


def _lua_files() -> set[tuple[str, str]]:
    """(dotted package, file name) of every .lua file in the packages and their sub-packages."""
    return {
        (".".join(path.parent.relative_to(ROOT).parts), path.name)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.lua")
    }


def _loaded() -> set[tuple[str, str]]:
    return {match for path in _sources() for match in _LOAD.findall(path.read_text())}


def test_the_tree_has_the_scripts_that_were_moved_out_of_python() -> None:
    """The scan below sees the files (a wrong root would make it pass on nothing)."""
    expected = {
        ("gateway.stores", "revoke.lua"),
        ("gateway.submission", "submit_check.lua"),
        ("gateway.submission", "idempotency_renew.lua"),
        ("gateway.submission", "idempotency_release.lua"),
        ("workers", "lifecycle_gate.lua"),
        ("workers", "lifecycle_finish.lua"),
        ("workers.execution", "finish_unless_revoked.lua"),
        ("workers", "fenced_ack.lua"),
        ("workers", "liveness_tend.lua"),
        ("workers", "liveness_reclaim.lua"),
        ("workers.celery_ext", "restore_from_copy.lua"),
        ("workers", "sweeper_lock.lua"),
        ("workers", "sweep.lua"),
        ("security.audit", "audit_append.lua"),
        ("security.audit", "audit_trim.lua"),
        ("security.audit", "refusal_count.lua"),
        ("security.audit", "refusal_claim.lua"),
    }
    assert expected <= _lua_files()


def test_every_lua_file_is_loaded_by_some_module() -> None:
    """A .lua file no module loads is dead code (or a script someone forgot to wire in)."""
    assert _lua_files() - _loaded() == set()


def test_every_loaded_script_exists_and_opens_with_a_comment() -> None:
    """Each load names a shipped file; each file says what it takes at its top."""
    loaded = _loaded()
    assert loaded
    for package, name in sorted(loaded):
        text = lua_script(package, name)
        assert "redis.call(" in text, name
        lines = text.split("\n")
        opening = lines[: next(i for i, line in enumerate(lines) if not line.startswith("--"))]
        assert opening, name
        assert "KEYS" in " ".join(opening), name


def test_no_python_outside_tests_holds_a_lua_script() -> None:
    """Scripts live in .lua files: no ``redis.call(`` in a project .py file."""
    sources = _sources()
    assert any(path.name == "lua.py" for path in sources)
    assert [
        str(path.relative_to(ROOT)) for path in sources if "redis.call(" in path.read_text()
    ] == []


def test_a_missing_script_fails_at_load() -> None:
    """A misnamed script is an error when its module is imported, not a nil in Redis."""
    with pytest.raises(FileNotFoundError):
        lua_script("workers", "no_such_script.lua")


def test_lua_files_ship_as_package_data() -> None:
    """The wheel carries the .lua files beside the modules that read them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.lua" in config["tool"]["setuptools"]["package-data"]["*"]


def test_fill_fields_quotes_each_field_and_leaves_comments_alone() -> None:
    script = "-- $A is filled\nlocal x = redis.call('HMGET', KEYS[1], $A)\nlocal y = {$B}"
    filled = fill_fields(script, A=("name", "mac"), B=("jtis",))
    assert filled == (
        "-- $A is filled\nlocal x = redis.call('HMGET', KEYS[1], 'name', 'mac')\nlocal y = {'jtis'}"
    )


@pytest.mark.parametrize(
    ("script", "fields"),
    [
        ("return {$A, $B}", {"A": ("a",)}),  # a slot with no fields
        ("return {$A}", {"A": ("a",), "B": ("b",)}),  # fields for no slot
        ("return {$A}", {"A": ("it's",)}),  # a quote would end the Lua string
        ("return {$A}", {"A": ()}),  # HMGET with no fields is a Redis error
    ],
)
def test_fill_fields_refuses_what_would_not_be_the_intended_script(
    script: str, fields: dict[str, tuple[str, ...]]
) -> None:
    with pytest.raises(ValueError, match=r"fields"):
        fill_fields(script, **fields)


def test_the_submission_check_reads_the_fields_the_gateway_verifies() -> None:
    """The check script's HMGETs name exactly the fields gateway.stores.checks checks the MAC of."""
    from gateway.stores.checks import CLIENT_READ, REVOCATION_READ
    from gateway.submission.checks import _CHECK

    code = [line for line in _CHECK.source.split("\n") if not line.startswith("--")]
    assert "$" not in "\n".join(code)
    quoted = ", ".join(f"'{field}'" for field in CLIENT_READ)
    assert f"redis.call('HMGET', KEYS[2], {quoted})" in _CHECK.source
    quoted = ", ".join(f"'{field}'" for field in REVOCATION_READ)
    assert f"redis.call('HMGET', KEYS[7], {quoted})" in _CHECK.source
