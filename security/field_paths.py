"""Dotted field paths into JSON payloads (``items.*.token``), as task declarations name
their secret fields: parse one, and find every place it names in a payload."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from security.errors import ConfigError, InputRejectedError

__all__ = ["field_targets", "join_path", "split_path"]


def split_path(path: str) -> list[str]:
    """The segments of a dotted secret path (``items.*.token``); a malformed one is refused."""
    segments = path.split(".")
    if not path or any(not s for s in segments):
        raise ConfigError(
            "secret_paths",
            f"{path!r} is not a dotted field path",
            "name fields separated by dots, '*' for every item of a list",
        )
    return segments


def field_targets(root: Any, segments: list[str]) -> list[tuple[Any, Any, str]]:
    """Every (container, key-or-index, dotted path) that ``segments`` names in ``root``."""
    frontier: list[tuple[Any, str]] = [(root, "")]
    found: list[tuple[Any, Any, str]] = []
    for seg in segments:
        found = []
        for node, where in frontier:
            if node is None:
                continue  # a missing optional branch holds no secret
            if isinstance(node, dict):
                slots: Iterable[Any] = list(node) if seg == "*" else [seg] if seg in node else []
            elif isinstance(node, list) and seg == "*":
                slots = range(len(node))
            else:
                raise InputRejectedError(
                    f"field {where or '<root>'!r} does not fit the secret path",
                    field=where,
                    reason="secret_path_mismatch",
                )
            found.extend((node, s, join_path(where, s)) for s in slots)
        frontier = [(c[s], w) for c, s, w in found]
    return found


def join_path(where: str, key: object) -> str:
    """``where`` extended by one key or index, dotted."""
    return f"{where}.{key}" if where else str(key)
