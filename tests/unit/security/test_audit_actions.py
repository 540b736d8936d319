"""Audit actions: one vocabulary for the code, the Lua scripts and docs/audit.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from security.audit.actions import AuditAction

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "workers", "taskgate", "security")
# A dotted lowercase name: an action ("admin.dlq.purge"), quoted or inside a JSON string.
_DOTTED = re.compile(r"['\"]([a-z_]+(?:\.[a-z_]+)+)['\"]")
_BACKTICKED = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`")
# Modules whose dotted names are log events, some spelt like an action (docs/logging.md).
LOG_EVENT_MODULES = frozenset({"lifecycle_log.py"})


def _documented() -> set[str]:
    """The action names in docs/audit.md's "Actions" table (its first column)."""
    text = (ROOT / "docs" / "audit.md").read_text()
    section = text.split("\n## Actions\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in _BACKTICKED.findall(row.split(" | ", 1)[0])}


def test_docs_list_every_action_and_no_other() -> None:
    """docs/audit.md's Actions table names each AuditAction once over, and nothing else."""
    documented = _documented()
    assert documented, "the Actions table of docs/audit.md was not found"
    assert sorted(set(AuditAction) - documented) == [], "undocumented actions"
    assert sorted(documented - set(AuditAction)) == [], "documented actions that do not exist"


def test_every_action_the_lua_scripts_write_is_a_member() -> None:
    """An action a script writes itself (the refusal overflow group) is an AuditAction."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.lua"):
            code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
            found[path.name] = set(_DOTTED.findall(code))
    assert found.get("refusal_count.lua"), "the scan found no action in refusal_count.lua"
    strays = {name: sorted(words - set(AuditAction)) for name, words in found.items()}
    assert {name: words for name, words in strays.items() if words} == {}


ENUM_MODULE = Path(str(sys.modules[AuditAction.__module__].__file__)).resolve()


def test_the_python_code_quotes_no_action() -> None:
    """Outside the enum (and the log event names), no Python module quotes an action name:
    they name members."""
    actions = set(AuditAction)
    quoted = {
        f"{path.relative_to(ROOT)}: {word}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path != ENUM_MODULE and path.name not in LOG_EVENT_MODULES
        for word in _DOTTED.findall(_code(path))
        if word in actions
    }
    assert sorted(quoted) == []


def _code(path: Path) -> str:
    """The module without comments, docstrings or a keyword argument ``target=`` (targets
    may name a route such as ``audit.verify``)."""
    text = re.sub(r'"""[\s\S]*?"""', "", path.read_text())
    text = re.sub(r"target=\"[^\"]*\"", "", text)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_an_action_is_its_stored_string() -> None:
    """A member is the written string: equal, same hash, formatted as itself."""
    written: str = "admin.dlq.purge"  # as read back: any str, not a literal
    assert written == AuditAction.ADMIN_DLQ_PURGE
    assert "task.submit" in frozenset({AuditAction.TASK_SUBMIT})
    assert f"{AuditAction.TOKEN_ISSUE}" == "token.issue"
