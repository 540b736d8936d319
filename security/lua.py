"""Redis Lua scripts, each a ``.lua`` file beside the module that runs it.

A script lives in its own file (what it does, its KEYS and ARGV in ``--`` comments at its
top) so it reads, diffs and lints as Lua. The files ship as package data; this reads one,
once per process. A script that reads a hash's fields named by a Python constant names them
``$NAME`` and :func:`fill_fields` puts them in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib.resources import files

__all__ = ["fill_fields", "lua_script"]


@functools.cache
def lua_script(package: str, name: str) -> str:
    """The text of the script ``name`` (e.g. ``"lifecycle_gate.lua"``) in ``package``."""
    return files(package).joinpath(name).read_text(encoding="utf-8")


_FIELD = re.compile(r"[A-Za-z0-9_.:-]+")
_SLOT = re.compile(r"\$([A-Z_]+)")


def fill_fields(script: str, **fields: Sequence[str]) -> str:
    """``script`` with each ``$NAME`` replaced by ``fields[NAME]`` as quoted Lua strings,
    comma-separated (a hash's field names kept in one Python constant). Every slot must be
    filled and every name used: a slot left over would make a script Redis refuses."""
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            raise ValueError(f"no fields for ${name}")
        used.add(name)
        bad = [field for field in fields[name] if not _FIELD.fullmatch(field)]
        if bad or not fields[name]:
            raise ValueError(f"fields for ${name} must be plain names")
        return ", ".join(f"'{field}'" for field in fields[name])

    code = "\n".join(
        line if line.startswith("--") else _SLOT.sub(fill, line) for line in script.split("\n")
    )
    if used != set(fields):
        raise ValueError(f"unused fields: {sorted(set(fields) - used)}")
    return code
