"""Tests for security.sanitise: clean strings, e-mail, URLs and JSON limits."""

from __future__ import annotations

import contextlib
import json
import math
import unicodedata
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from security.errors import InputRejectedError
from security.sanitise import (
    CleanStr,
    EmailAddress,
    SafeEmail,
    SafeHttpsUrl,
    SafeURL,
    ShortStr,
    Text,
    check_json_limits,
    clean_str,
    loads_limited,
    safe_url,
)

SINGLE = CleanStr(max_length=100)
MULTI = CleanStr(max_length=100, multiline=True)


def error_type(call: Any) -> str:
    """Run ``call`` and return the PydanticCustomError type it raised."""
    with pytest.raises(PydanticCustomError) as info:
        call()
    return info.value.type


def first_error(adapter: TypeAdapter[Any], value: object) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    return dict(info.value.errors(include_input=False, include_url=False)[0])


# --- CleanStr: normalisation ------------------------------------------------------------


def test_clean_str_normalises_to_nfc() -> None:
    """A decomposed e + combining acute becomes the single precomposed character."""
    assert SINGLE.validate("Cafe\u0301") == "Caf\u00e9"


def test_clean_str_composes_hangul_jamo() -> None:
    """Conjoining jamo are composed into a syllable."""
    assert SINGLE.validate("\u1112\u1161\u11ab") == "\ud55c"


def test_clean_str_length_counts_after_normalisation() -> None:
    """Six decomposed code points that are three characters fit max_length=3."""
    assert CleanStr(max_length=3).validate("e\u0301" * 3) == "\u00e9" * 3


def test_clean_str_multiline_turns_crlf_into_lf() -> None:
    """Windows line endings become \\n in multiline text."""
    assert MULTI.validate("a\r\nb\r\n") == "a\nb\n"


def test_clean_str_multiline_keeps_newline_and_tab() -> None:
    """\\n and \\t are allowed when multiline."""
    assert MULTI.validate("a\n\tb") == "a\n\tb"


def test_clean_str_keeps_joiners_for_emoji_and_scripts() -> None:
    """ZWJ (emoji sequences) and ZWNJ (Persian, Indic) are legitimate and kept."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert SINGLE.validate(family) == family
    assert SINGLE.validate("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645")


def test_clean_str_accepts_ordinary_unicode_text() -> None:
    """Non-Latin scripts, private-use and emoji pass untouched."""
    text = "\u65e5\u672c\u8a9e \u0440\u0443\u0441 \U0001f600 \ue000"
    assert SINGLE.validate(text) == text


# --- CleanStr: each refusal -------------------------------------------------------------


def test_clean_str_refuses_newline_when_single_line() -> None:
    """\\n is refused unless multiline."""
    assert error_type(lambda: SINGLE.validate("a\nb")) == "forbidden_character"


def test_clean_str_refuses_tab_when_single_line() -> None:
    """\\t is refused unless multiline."""
    assert error_type(lambda: SINGLE.validate("a\tb")) == "forbidden_character"


def test_clean_str_refuses_lone_carriage_return_even_multiline() -> None:
    """A bare \\r is never allowed."""
    assert error_type(lambda: MULTI.validate("a\rb")) == "forbidden_character"
    assert error_type(lambda: SINGLE.validate("a\r\nb")) == "forbidden_character"


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9b"])
def test_clean_str_refuses_c0_c1_controls(char: str) -> None:
    """NUL, BEL, ESC, DEL, NEL and CSI are refused, in either mode."""
    assert error_type(lambda: SINGLE.validate(f"a{char}b")) == "forbidden_character"
    assert error_type(lambda: MULTI.validate(f"a{char}b")) == "forbidden_character"


@pytest.mark.parametrize(
    "char",
    ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"],
)
def test_clean_str_refuses_bidi_overrides_and_isolates(char: str) -> None:
    """Trojan-Source bidi controls are refused."""
    assert error_type(lambda: SINGLE.validate(f"admin{char}txt")) == "forbidden_character"


@pytest.mark.parametrize("char", ["\u200e", "\u200f", "\u061c"])
def test_clean_str_refuses_directional_marks(char: str) -> None:
    """LRM, RLM and the Arabic letter mark are refused."""
    assert error_type(lambda: SINGLE.validate(f"a{char}b")) == "forbidden_character"


@pytest.mark.parametrize("char", ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u180e"])
def test_clean_str_refuses_invisible_zero_width_characters(char: str) -> None:
    """ZWSP, word joiner, BOM, soft hyphen and the Mongolian vowel separator are refused."""
    assert error_type(lambda: SINGLE.validate(f"pay{char}pal")) == "forbidden_character"


def test_clean_str_refuses_unicode_tag_characters() -> None:
    """Invisible tag characters (used to smuggle hidden instructions) are refused."""
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "ignore")
    assert error_type(lambda: SINGLE.validate(f"hello{hidden}")) == "forbidden_character"


def test_clean_str_refuses_lone_surrogate() -> None:
    """An unpaired surrogate (possible via JSON \\ud800 escapes) is refused."""
    assert error_type(lambda: SINGLE.validate("a\ud800b")) == "forbidden_character"


@pytest.mark.parametrize("char", ["\u2028", "\u2029"])
def test_clean_str_refuses_unicode_line_separators(char: str) -> None:
    """U+2028/U+2029 break logs and JavaScript and are refused even multiline."""
    assert error_type(lambda: MULTI.validate(f"a{char}b")) == "forbidden_character"


@pytest.mark.parametrize("char", ["\ufffe", "\uffff", "\ufdd0", "\ufdef", "\U0001fffe"])
def test_clean_str_refuses_noncharacters(char: str) -> None:
    """Unicode noncharacters are refused."""
    assert error_type(lambda: SINGLE.validate(f"a{char}b")) == "forbidden_character"


def test_clean_str_refuses_too_long_after_normalisation() -> None:
    """More characters than max_length after NFC is refused with the limit in context."""
    with pytest.raises(PydanticCustomError) as info:
        CleanStr(max_length=3).validate("abcd")
    assert info.value.type == "string_too_long"
    assert info.value.context == {"max_length": 3}


def test_clean_str_refuses_huge_input_before_normalising() -> None:
    """Input beyond four times max_length is refused without normalising it."""
    assert error_type(lambda: CleanStr(max_length=3).validate("e\u0301" * 7)) == ("string_too_long")


def test_clean_str_refuses_too_short() -> None:
    """Fewer characters than min_length is refused."""
    assert error_type(lambda: CleanStr(min_length=2).validate("a")) == "string_too_short"


def test_clean_str_error_message_does_not_echo_value() -> None:
    """The refusal message does not contain the refused text."""
    with pytest.raises(PydanticCustomError) as info:
        SINGLE.validate("secret-value\x00")
    assert "secret-value" not in str(info.value)


@pytest.mark.parametrize(("max_length", "min_length"), [(5, 6), (5, -1), (-1, 0)])
def test_clean_str_refuses_inconsistent_limits(max_length: int, min_length: int) -> None:
    """A marker with impossible limits is a programming error."""
    with pytest.raises(ValueError, match="min_length"):
        CleanStr(max_length=max_length, min_length=min_length)


def test_clean_str_in_a_model_is_strict_about_type() -> None:
    """Bytes and numbers are not coerced into text."""
    adapter: TypeAdapter[Any] = TypeAdapter(ShortStr)
    assert first_error(adapter, b"abc")["type"] == "string_type"
    assert first_error(adapter, 5)["type"] == "string_type"


def test_aliases_have_their_documented_limits() -> None:
    """ShortStr is single-line <= 200; Text is multiline <= 10,000."""
    short: TypeAdapter[Any] = TypeAdapter(ShortStr)
    text: TypeAdapter[Any] = TypeAdapter(Text)
    assert short.json_schema() == {"type": "string", "maxLength": 200}
    assert short.validate_python("x" * 200)
    assert first_error(short, "x" * 201)["type"] == "string_too_long"
    assert first_error(short, "a\nb")["type"] == "forbidden_character"
    assert text.validate_python("a\r\n" * 3000) == "a\n" * 3000
    assert first_error(text, "x" * 10_001)["type"] == "string_too_long"


def test_clean_str_factory_builds_a_usable_type() -> None:
    """clean_str(...) returns an Annotated type that validates and documents its limits."""
    adapter: TypeAdapter[Any] = TypeAdapter(clean_str(max_length=5, min_length=1, multiline=True))
    assert adapter.validate_python("a\r\nb") == "a\nb"
    assert adapter.json_schema() == {"type": "string", "maxLength": 5, "minLength": 1}
    assert first_error(adapter, "")["type"] == "string_too_short"


def test_model_with_hidden_input_does_not_leak_the_value() -> None:
    """With hide_input_in_errors the ValidationError text omits the refused value."""

    class Payload(BaseModel):
        model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
        name: ShortStr

    with pytest.raises(ValidationError) as info:
        Payload(name="hunter2\u202e")
    assert "hunter2" not in str(info.value)


_ALLOWED_CONTROLS = {"\n", "\t"}


@given(text=st.text(max_size=60), multiline=st.booleans())
def test_clean_str_is_idempotent_and_control_free(text: str, multiline: bool) -> None:
    """Cleaning twice equals cleaning once, and no control/format character survives."""
    marker = CleanStr(max_length=100, multiline=multiline)
    try:
        once = marker.validate(text)
    except PydanticCustomError:
        return
    assert marker.validate(once) == once
    assert unicodedata.is_normalized("NFC", once)
    for ch in once:
        category = unicodedata.category(ch)
        if multiline and ch in _ALLOWED_CONTROLS:
            continue
        assert category not in {"Cc", "Cs", "Zl", "Zp"}
        assert category != "Cf" or ch in {"\u200c", "\u200d"}


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_clean_str_multiline_output_has_no_carriage_return(text: str) -> None:
    """Whatever comes in, multiline output never contains \\r."""
    with contextlib.suppress(PydanticCustomError):
        assert "\r" not in MULTI.validate(text)


# --- SafeEmail --------------------------------------------------------------------------

EMAIL: TypeAdapter[Any] = TypeAdapter(SafeEmail)


def test_email_lowercases_domain_and_keeps_local_part() -> None:
    """The domain is lowercased; the local part's case is preserved."""
    assert EMAIL.validate_python("Bob.Smith@EXAMPLE.Com") == "Bob.Smith@example.com"


def test_email_encodes_international_domain_as_idna() -> None:
    """An internationalised domain comes back in ASCII (punycode) form for SMTP."""
    assert EMAIL.validate_python("bob@B\u00fccher.de") == "bob@xn--bcher-kva.de"


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com\r\nBcc: victim@example.org",
        "a@example.com\nBcc: v@example.org",
        "a@example.com\r",
        "a\x00@example.com",
        "a@example.com\t",
        "a @example.com",
        "a@exa\u200bmple.com",
        "a@example.com\u2028",
    ],
)
def test_email_refuses_control_characters_and_whitespace(value: str) -> None:
    """CR/LF header injection, NUL, tabs, spaces and invisible characters are refused."""
    assert first_error(EMAIL, value)["type"] == "email_control_character"


@pytest.mark.parametrize("value", ["a@example.com,b@example.com", "a@example.com;b@example.com"])
def test_email_refuses_multiple_recipients(value: str) -> None:
    """Comma- or semicolon-separated lists are refused."""
    assert first_error(EMAIL, value)["type"] == "email_multiple"


@pytest.mark.parametrize(
    "value",
    [
        "Bob<bob@example.com>",
        '"Bob"<bob@example.com>',
        '"bob"@example.com',
        "(comment)bob@example.com",
        "bob@[127.0.0.1]",
        "bob@[IPv6:::1]",
        "bob\\@example.com",
    ],
)
def test_email_refuses_display_names_comments_quotes_and_literals(value: str) -> None:
    """Only a bare local@domain mailbox is accepted."""
    assert first_error(EMAIL, value)["type"] == "email_invalid"


@pytest.mark.parametrize(
    "value",
    ["no-at-sign", "a..b@example.com", "a@example", "a@localhost", "@example.com", "\u00fc@x.de"],
)
def test_email_refuses_invalid_syntax(value: str) -> None:
    """What email-validator refuses is refused, with our own generic message."""
    error = first_error(EMAIL, value)
    assert error["type"] == "email_invalid"
    assert value not in error["msg"]


def test_email_refuses_more_than_254_characters() -> None:
    """Addresses longer than 254 characters are refused before parsing."""
    value = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".eeeeeee.com"
    assert len(value) > 254
    assert first_error(EMAIL, value)["type"] == "email_too_long"


def test_email_marker_json_schema() -> None:
    """The JSON schema advertises the e-mail format and length cap."""
    assert EMAIL.json_schema() == {"type": "string", "format": "email", "maxLength": 254}


def test_email_marker_is_usable_directly() -> None:
    """EmailAddress().validate works outside pydantic too."""
    assert EmailAddress().validate("x@Example.org") == "x@example.org"


# --- SafeHttpsUrl -----------------------------------------------------------------------

URL: TypeAdapter[Any] = TypeAdapter(SafeHttpsUrl)


def test_url_is_normalised() -> None:
    """Scheme and host are lowercased; path, query and fragment are kept."""
    assert URL.validate_python("HTTPS://Example.COM:8443/A?b=C#d") == (
        "https://example.com:8443/A?b=C#d"
    )


def test_url_hostname_is_not_resolved_at_validation() -> None:
    """A hostname is accepted on syntax alone; the fetcher checks addresses."""
    assert URL.validate_python("https://internal.corp.example/") == (
        "https://internal.corp.example/"
    )


def test_url_refuses_http_by_default() -> None:
    """SafeHttpsUrl accepts https only."""
    error = first_error(URL, "http://example.com/")
    assert (error["type"], error["ctx"]) == ("unsafe_url", {"reason": "scheme_not_allowed"})


def test_url_factory_can_allow_http() -> None:
    """safe_url(("https", "http")) accepts both."""
    adapter: TypeAdapter[Any] = TypeAdapter(safe_url(("https", "http")))
    assert adapter.validate_python("http://example.com/") == "http://example.com/"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/\r\nX: y", "bad_char"),
        ("https://example.com/ x", "bad_char"),
        ("https:///nohost", "no_host"),
        ("https://example.com/" + "a" * 2048, "too_long"),
        ("https://10.0.0.1/", "non_public_address"),
        ("https://169.254.169.254/", "non_public_address"),
        ("https://[::1]/", "non_public_address"),
        ("https://127.1/", "bad_host"),
    ],
)
def test_url_refusals_carry_reason_not_value(value: str, reason: str) -> None:
    """Each refusal has type unsafe_url, the reason code in ctx, and no value in msg."""
    error = first_error(URL, value)
    assert (error["type"], error["ctx"]) == ("unsafe_url", {"reason": reason})
    assert "example.com" not in error["msg"]


@pytest.mark.parametrize("schemes", [(), ("ftp",), ("https", "file")])
def test_url_marker_refuses_unsupported_schemes(schemes: tuple[str, ...]) -> None:
    """Only http/https can be configured."""
    with pytest.raises(ValueError, match="schemes"):
        SafeURL(schemes)


def test_url_marker_json_schema() -> None:
    """The JSON schema advertises the uri format and 2048 cap."""
    assert URL.json_schema() == {"type": "string", "format": "uri", "maxLength": 2048}


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


def test_annotated_marker_composes_with_models() -> None:
    """The markers work inside a model via Annotated, with extra=forbid."""

    class Mail(BaseModel):
        model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
        to: SafeEmail
        subject: Annotated[str, CleanStr(max_length=20, min_length=1)]
        body: Text
        link: SafeHttpsUrl

    mail = Mail(to="a@Example.com", subject="Hi", body="x\r\ny", link="https://Example.com")
    assert (mail.to, mail.body, mail.link) == ("a@example.com", "x\ny", "https://example.com")
