"""The README and docs: examples run as written, links resolve, the README stays short."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TASKS_DOC = DOCS / "tasks.md"
README_MAX_LINES = 250
# Folders that are not the project's own files (generated, installed or cached).
SKIP_DIRS = {".git", ".venv", ".taskgate", ".hypothesis", "build", "dist", "htmlcov"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# A file of the repository named in backticks: `workers/contract/wire.py`, `docs/decisions/`.
REPO_PATH = re.compile(r"`((?:certs|docs|gateway|security|taskgate|tests|workers)/[\w./-]*)`")


def _block_after(path: Path, heading: str, lang: str = "python") -> str:
    text = path.read_text()
    section = text.split(heading, 1)[1]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {lang} block after {heading} in {path.name}"
    return match.group(1)


def _section(path: Path, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same level."""
    text = path.read_text()
    level = heading.split(" ", 1)[0]
    return text.split(heading, 1)[1].split(f"\n{level} ", 1)[0]


def _markdown_files() -> list[Path]:
    return sorted({README, *ROOT.glob("*.md"), *DOCS.rglob("*.md")})


def _project_files() -> list[Path]:
    files = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIP_DIRS or any(p.endswith((".egg-info", "_cache")) for p in parts):
            continue
        if path.is_file() and "__pycache__" not in parts:
            files.append(path)
    return files


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_add_your_own_task_example_declares_a_working_task() -> None:
    """The example registers billing.invoice with its secret field, scope and limits."""
    code = _block_after(TASKS_DOC, "## Add your own task").replace("    ...\n", "    key.upper()\n")
    check = (
        code + "\nfrom workers.contract.catalogue import default_catalogue\n"
        "spec = default_catalogue.get('billing.invoice')\n"
        "assert spec is not None\n"
        "assert spec.secret_fields == ('api_key',)\n"
        "assert spec.scope == 'tasks:submit:billing.invoice'\n"
        "assert spec.retry.max_attempts == 5\n"
        "m = spec.schema.model_validate(\n"
        "    {'customer': 'a@example.com', 'reference': 'INV-1', 'api_key': 'k'})\n"
        "assert '**' in repr(m.api_key)\n"
        "assert spec.fn(m) == {'status': 'created'}\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_readme_is_short() -> None:
    """The README is a user's page: at most 250 lines; the rest lives in docs/."""
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"


def test_readme_states_the_two_commands() -> None:
    """The README names `make run` and `make test`, the two commands a new user needs."""
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text


def test_no_file_refers_outside_the_repository() -> None:
    """No file points at the design notes beside the repository, which a clone lacks."""
    outside = "../" + "shared"  # split so this file does not match itself
    offenders = [
        str(path.relative_to(ROOT))
        for path in _project_files()
        if outside in path.read_text(errors="replace")
    ]
    assert offenders == []


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    """Every relative link in the README and docs names an existing file (and heading)."""
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        missing_anchor = bool(anchor) and dest.is_file() and anchor not in _anchors(dest)
        if not dest.exists() or missing_anchor:
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_source_files_exist(doc: Path) -> None:
    """Every repository path the docs name in backticks exists (modules move; docs follow);
    a folder the docs name as git-ignored output (made by a run) is listed in .gitignore."""
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = [
        name
        for name in REPO_PATH.findall(doc.read_text())
        if not (ROOT / name).exists() and name.rstrip("/") not in ignored
    ]
    assert missing == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_walkthrough_is_valid_bash_without_placeholders() -> None:
    """The walkthrough's shell blocks parse as bash and hold no `<...>` placeholder."""
    blocks = re.findall(r"```sh\n(.*?)```", _section(README, "## Walkthrough"), re.DOTALL)
    assert blocks, "no sh blocks in the walkthrough"
    script = "".join(blocks)
    assert not re.search(r"<[a-z][^>]*>", script), "a placeholder would not paste and run"
    proc = subprocess.run(
        ["bash", "-n"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
