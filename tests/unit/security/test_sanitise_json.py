"""Tests for security.sanitise's JSON limits.

``check_json_limits`` (depth, sizes, keys, non-JSON values) and ``loads_limited``, which
parses untrusted bytes within those limits.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from security.errors import InputRejectedError
from security.sanitise import check_json_limits, loads_limited

# --- check_json_limits ------------------------------------------------------------------


def reason_and_field(call: Any) -> tuple[str, str]:
    with pytest.raises(InputRejectedError) as info:
        call()
    return info.value.reason, info.value.field


def nested(depth: int) -> object:
    """``depth`` containers, alternating arrays and objects, around a number."""
    value: object = 1
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def test_json_limits_accept_a_normal_payload() -> None:
    """Ordinary JSON types within limits pass."""
    check_json_limits({"a": [1, 2.5, "x", None, True], "b": {"c": ()}})


def test_json_limits_depth_boundary() -> None:
    """max_depth containers nest fine; one more is too_deep."""
    check_json_limits(nested(4), max_depth=4)
    assert reason_and_field(lambda: check_json_limits(nested(5), max_depth=4))[0] == "too_deep"


def test_json_limits_report_path_of_offending_node() -> None:
    """The field is the dotted path to the problem, with array indexes."""
    value = {"items": [{"name": "ok"}, {"name": "x" * 11}]}
    assert reason_and_field(lambda: check_json_limits(value, max_string=10)) == (
        "string_too_long",
        "items[1].name",
    )


def test_json_limits_mask_unusual_keys_in_path() -> None:
    """Keys that are not plain identifiers never reach the error; they show as *."""
    value = {"secret value!": {"ok_key": float("nan")}}
    assert reason_and_field(lambda: check_json_limits(value)) == ("not_finite", "*.ok_key")


def test_json_limits_refuse_too_many_keys() -> None:
    """An object with more than max_keys keys is refused."""
    value = {"o": {str(i): i for i in range(4)}}
    assert reason_and_field(lambda: check_json_limits(value, max_keys=3)) == ("too_many_keys", "o")


def test_json_limits_refuse_too_many_items() -> None:
    """An array with more than max_items items is refused."""
    assert reason_and_field(lambda: check_json_limits([[0] * 4], max_items=3)) == (
        "too_many_items",
        "[0]",
    )


def test_json_limits_refuse_long_key() -> None:
    """Keys count against max_string too."""
    assert reason_and_field(lambda: check_json_limits({"k" * 11: 1}, max_string=10)) == (
        "string_too_long",
        "",
    )


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_json_limits_refuse_non_finite_floats(number: float) -> None:
    """NaN and infinities are not JSON."""
    assert reason_and_field(lambda: check_json_limits([number]))[0] == "not_finite"


def test_json_limits_refuse_non_string_key() -> None:
    """Object keys must be strings."""
    assert reason_and_field(lambda: check_json_limits({1: "x"}))[0] == "bad_key"


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), 1j])
def test_json_limits_refuse_non_json_types(value: object) -> None:
    """Sets, bytes, arbitrary objects and complex numbers are refused."""
    assert reason_and_field(lambda: check_json_limits({"v": value})) == ("bad_type", "v")


def test_json_limits_survive_deep_and_cyclic_values() -> None:
    """A 100,000-deep list and a self-containing list are refused without recursion."""
    assert reason_and_field(lambda: check_json_limits(nested(100_000)))[0] == "too_deep"
    cyclic: list[object] = []
    cyclic.append(cyclic)
    assert reason_and_field(lambda: check_json_limits(cyclic))[0] == "too_deep"


# --- loads_limited ----------------------------------------------------------------------


def test_loads_limited_parses_valid_json() -> None:
    """Valid JSON within limits is returned parsed."""
    raw = json.dumps({"a": [1, 2.5, "\u00e9", None, {"b": True}]}).encode()
    assert loads_limited(raw, max_bytes=100) == {"a": [1, 2.5, "\u00e9", None, {"b": True}]}


def test_loads_limited_refuses_oversized_input_before_parsing() -> None:
    """More than max_bytes is refused, even if it is not JSON at all."""
    assert reason_and_field(lambda: loads_limited(b"x" * 11, max_bytes=10))[0] == "too_large"


def test_loads_limited_refuses_non_utf8() -> None:
    """Bytes that are not UTF-8 (including UTF-16) are refused."""
    assert reason_and_field(lambda: loads_limited(b'"\xff"', max_bytes=10))[0] == "bad_encoding"
    utf16 = '"a"'.encode("utf-16")
    assert reason_and_field(lambda: loads_limited(utf16, max_bytes=10))[0] == "bad_encoding"


def test_loads_limited_refuses_deep_nesting_without_recursion() -> None:
    """100,000 nested arrays are refused before the recursive stdlib parser sees them."""
    raw = b"[" * 100_000 + b"]" * 100_000
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=len(raw)))[0] == "too_deep"


def test_loads_limited_maps_parser_recursion_to_too_deep() -> None:
    """Even with max_depth above the interpreter limit, deep input is too_deep, not a crash."""
    raw = b"[" * 50_000 + b"]" * 50_000
    call = lambda: loads_limited(raw, max_bytes=len(raw), max_depth=10**6)  # noqa: E731 - one-shot
    assert reason_and_field(call)[0] == "too_deep"


def test_loads_limited_ignores_brackets_inside_strings() -> None:
    """Brackets and escaped quotes inside string literals do not count as nesting."""
    raw = json.dumps(["[[[[{{{{", 'q"[[[[', "\\[[[["]).encode()
    assert loads_limited(raw, max_bytes=100, max_depth=1) == ["[[[[{{{{", 'q"[[[[', "\\[[[["]


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}'])
def test_loads_limited_refuses_nan_and_infinity(raw: bytes) -> None:
    """Non-standard NaN/Infinity literals are refused."""
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=100))[0] == "not_finite"


def test_loads_limited_refuses_overflowing_float() -> None:
    """1e999 would silently become inf; it is refused."""
    assert reason_and_field(lambda: loads_limited(b"[1e999]", max_bytes=100))[0] == "not_finite"


def test_loads_limited_refuses_duplicate_keys() -> None:
    """Duplicate keys are refused, at any depth."""
    raw = b'{"a": {"b": 1, "b": 2}}'
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=100))[0] == "duplicate_key"


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b"{'a': 1}", b"\xef\xbb\xbf[]", b"[1] x"])
def test_loads_limited_refuses_malformed_json(raw: bytes) -> None:
    """Anything the strict parser refuses is bad_json."""
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=100))[0] == "bad_json"


def test_loads_limited_refuses_integer_with_too_many_digits() -> None:
    """An integer longer than the interpreter's digit limit is bad_json, not a crash."""
    raw = b"1" * 5000
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=len(raw)))[0] == "bad_json"


def test_loads_limited_applies_structural_limits() -> None:
    """After parsing, check_json_limits runs with the given limits."""
    raw = b'{"a": [1, 2, 3, 4]}'
    assert reason_and_field(lambda: loads_limited(raw, max_bytes=100, max_items=3)) == (
        "too_many_items",
        "a",
    )


def test_loads_limited_error_does_not_echo_payload() -> None:
    """No part of the payload appears in the error message."""
    with pytest.raises(InputRejectedError) as info:
        loads_limited(b'{"password": "hunter2", "password": 1}', max_bytes=100)
    assert "hunter2" not in str(info.value)
    assert "password" not in str(info.value)
