"""Tests for security.sanitise's clean strings (``CleanStr`` and its aliases).

Unicode normalisation, the characters refused (controls, bidi, invisibles, line
separators) and the length limits, as plain values and inside models.
"""

from __future__ import annotations

import contextlib
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from security.sanitise import CleanStr, ShortStr, Text, clean_str
from tests.support.validation import first_error

SINGLE = CleanStr(max_length=100)
MULTI = CleanStr(max_length=100, multiline=True)


def error_type(call: Any) -> str:
    """Run ``call`` and return the PydanticCustomError type it raised."""
    with pytest.raises(PydanticCustomError) as info:
        call()
    return info.value.type


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
