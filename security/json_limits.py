"""Limits on untrusted JSON: size, encoding, nesting, keys, items, strings, finite numbers.

:func:`loads_limited` parses a request body within limits; :func:`check_json_limits` checks
an already-parsed value. A refusal is an :class:`~security.errors.InputRejectedError`
naming the field path and a reason, never the value.
"""

from __future__ import annotations

import json
import math
import re

from security.errors import InputRejectedError

__all__ = ["check_json_limits", "loads_limited"]

_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# One JSON string literal (unrolled loop: no nested quantifier can backtrack badly).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_Path = tuple[str | int, ...]


def _field(path: _Path) -> str:
    """Dotted path for error reports; keys that are not plain identifiers show as ``*``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _SAFE_KEY.fullmatch(part) else "*"
            out += f".{name}" if out else name
    return out


def _reject(path: _Path, reason: str, what: str) -> InputRejectedError:
    return InputRejectedError(f"JSON value refused: {what}", field=_field(path), reason=reason)


def check_json_limits(
    value: object,
    *,
    max_depth: int = 16,
    max_keys: int = 1000,
    max_string: int = 1_000_000,
    max_items: int = 10_000,
) -> None:
    """Refuse a parsed JSON value that is too deep, too wide or holds non-JSON types.

    ``max_depth`` counts nested containers (a top-level object is depth 1); ``max_keys`` is
    per object, ``max_items`` per array, ``max_string`` per string (keys included). Raises
    ``InputRejectedError`` with ``field`` set to the path and ``reason`` one of
    ``too_deep``, ``too_many_keys``, ``too_many_items``, ``string_too_long``,
    ``not_finite``, ``bad_key``, ``bad_type``. Walks with an explicit stack, so neither a
    deep value nor a cyclic one can exhaust the interpreter stack.
    """
    stack: list[tuple[object, int, _Path]] = [(value, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth >= max_depth:
                raise _reject(path, "too_deep", "nested too deeply")
            stack.extend(
                _children(
                    node,
                    depth + 1,
                    path,
                    max_keys=max_keys,
                    max_items=max_items,
                    max_string=max_string,
                )
            )
        else:
            _check_scalar(node, path, max_string)


def _children(
    node: dict[object, object] | list[object] | tuple[object, ...],
    depth: int,
    path: _Path,
    *,
    max_keys: int,
    max_items: int,
    max_string: int,
) -> list[tuple[object, int, _Path]]:
    if not isinstance(node, dict):
        if len(node) > max_items:
            raise _reject(path, "too_many_items", "array has too many items")
        return [(child, depth, (*path, i)) for i, child in enumerate(node)]
    if len(node) > max_keys:
        raise _reject(path, "too_many_keys", "object has too many keys")
    children: list[tuple[object, int, _Path]] = []
    for key, child in node.items():
        if not isinstance(key, str):
            raise _reject(path, "bad_key", "object key is not a string")
        if len(key) > max_string:
            raise _reject(path, "string_too_long", "object key too long")
        children.append((child, depth, (*path, key)))
    return children


def _check_scalar(node: object, path: _Path, max_string: int) -> None:
    if isinstance(node, str):
        if len(node) > max_string:
            raise _reject(path, "string_too_long", "string too long")
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise _reject(path, "not_finite", "number is not finite")
    elif not (node is None or isinstance(node, bool | int)):
        raise _reject(path, "bad_type", "not a JSON type")


def _exceeds_nesting(text: str, max_depth: int) -> bool:
    """Bracket depth outside string literals, counted without recursion."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cheap common case: too few brackets to nest that deep
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _refuse_constant(_name: str) -> object:
    raise InputRejectedError("JSON value refused: NaN or Infinity", reason="not_finite")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # e.g. 1e999
        raise InputRejectedError("JSON value refused: number is not finite", reason="not_finite")
    return number


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # Parsers disagree on which duplicate wins; that disagreement smuggles values.
        raise InputRejectedError("JSON value refused: duplicate key", reason="duplicate_key")
    return result


def loads_limited(
    raw: bytes,
    *,
    max_bytes: int,
    max_depth: int = 16,
    max_keys: int = 1000,
    max_string: int = 1_000_000,
    max_items: int = 10_000,
) -> object:
    """Parse untrusted JSON bytes within limits; raise ``InputRejectedError`` otherwise.

    Refuses before parsing: more than ``max_bytes`` (``too_large``), not UTF-8
    (``bad_encoding``), bracket nesting deeper than ``max_depth`` (``too_deep``; checked
    first because the stdlib parser recurses). While parsing: NaN/Infinity or overflowing
    numbers (``not_finite``), duplicate keys (``duplicate_key``), anything malformed
    (``bad_json``). Then :func:`check_json_limits`.
    """
    if len(raw) > max_bytes:
        raise InputRejectedError("JSON value refused: body too large", reason="too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputRejectedError("JSON value refused: not UTF-8", reason="bad_encoding") from None
    if _exceeds_nesting(text, max_depth):
        raise InputRejectedError("JSON value refused: nested too deeply", reason="too_deep")
    try:
        value: object = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_object,
        )
    except RecursionError:  # only if max_depth is set above the interpreter's limit
        raise InputRejectedError(
            "JSON value refused: nested too deeply", reason="too_deep"
        ) from None
    except ValueError:  # malformed, or an integer beyond sys.get_int_max_str_digits()
        raise InputRejectedError("JSON value refused: malformed", reason="bad_json") from None
    check_json_limits(
        value, max_depth=max_depth, max_keys=max_keys, max_string=max_string, max_items=max_items
    )
    return value
