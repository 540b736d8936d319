"""Reusable pydantic v2 types and JSON limits for task payload schemas.

Use the markers with ``Annotated`` so mypy sees a plain ``str``::

    class SendMail(BaseModel):
        model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
        to: SafeEmail
        subject: ShortStr
        body: Text
        callback: SafeHttpsUrl
        tag: Annotated[str, CleanStr(max_length=40, min_length=1)]

Every refusal is a ``PydanticCustomError`` (a ``ValueError``) with a stable ``type`` and a
message that never contains the value. Pydantic itself puts the input into
``ValidationError`` details unless the model sets ``hide_input_in_errors=True`` (or the
caller uses ``errors(include_input=False)``); payload schemas should do so.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from security.errors import InputRejectedError, UnsafeURLError
from security.netguard import DEFAULT_PORTS, MAX_URL_LENGTH, check_url

__all__ = [
    "MAX_EMAIL_LENGTH",
    "CleanStr",
    "EmailAddress",
    "SafeEmail",
    "SafeHttpsUrl",
    "SafeURL",
    "ShortStr",
    "Text",
    "check_json_limits",
    "clean_str",
    "loads_limited",
    "safe_url",
]

MAX_EMAIL_LENGTH = 254

# Joiners are invisible but needed by Persian and Indic scripts and emoji sequences;
# every other format character (bidi overrides and isolates, ZWSP, word joiner, BOM, soft
# hyphen, tag characters used for invisible prompt smuggling) is refused.
_JOINERS = frozenset({"\u200c", "\u200d"})
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, lone surrogates, U+2028/9
# NFC shrinks text by at most this factor (the longest canonical decomposition is four
# code points), so longer input is refused before the comparatively costly normalisation.
_NFC_SHRINK = 4


def _str_schema(validate: Callable[[str], str]) -> CoreSchema:
    # strict: bytes and str subclasses are not silently coerced into text.
    return core_schema.no_info_after_validator_function(
        validate, core_schema.str_schema(strict=True)
    )


def _json_schema(
    schema: CoreSchema, handler: GetJsonSchemaHandler, extra: dict[str, Any]
) -> JsonSchemaValue:
    json_schema = handler(schema)
    json_schema.update(extra)
    return json_schema


def _is_forbidden(ch: str, multiline: bool) -> bool:
    if ch in "\n\t":
        return not multiline
    cp = ord(ch)
    if 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE:  # Unicode noncharacters
        return True
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch not in _JOINERS
    return category in _FORBIDDEN_CATEGORIES


@dataclass(frozen=True, slots=True)
class CleanStr:
    """``Annotated[str, CleanStr(...)]``: NFC-normalised text without control characters.

    Refuses C0/C1 controls, format characters except ZWJ/ZWNJ, lone surrogates, U+2028/9 and
    noncharacters; ``\\n`` and ``\\t`` only when ``multiline`` (which also turns ``\\r\\n``
    into ``\\n``; a lone ``\\r`` is always refused). Lengths count code points after NFC.
    """

    max_length: int = 1000
    min_length: int = 0
    multiline: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError("need 0 <= min_length <= max_length")

    def validate(self, value: str) -> str:
        """Return the cleaned value or raise ``PydanticCustomError``."""
        if len(value) > self.max_length * _NFC_SHRINK:
            raise _too_long(self.max_length)
        if self.multiline:
            value = value.replace("\r\n", "\n")
        value = unicodedata.normalize("NFC", value)
        if not (value.isascii() and value.isprintable()) and any(
            _is_forbidden(ch, self.multiline) for ch in set(value)
        ):
            raise PydanticCustomError(
                "forbidden_character",
                "String contains a control, line-break or invisible formatting character",
            )
        if len(value) > self.max_length:
            raise _too_long(self.max_length)
        if len(value) < self.min_length:
            raise PydanticCustomError(
                "string_too_short",
                "String should have at least {min_length} characters",
                {"min_length": self.min_length},
            )
        return value

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return _str_schema(self.validate)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        extra: dict[str, Any] = {"maxLength": self.max_length}
        if self.min_length:
            extra["minLength"] = self.min_length
        return _json_schema(schema, handler, extra)


def _too_long(max_length: int) -> PydanticCustomError:
    return PydanticCustomError(
        "string_too_long",
        "String should have at most {max_length} characters",
        {"max_length": max_length},
    )


def clean_str(*, max_length: int = 1000, min_length: int = 0, multiline: bool = False) -> Any:
    """Return ``Annotated[str, CleanStr(...)]``; prefer writing that form where mypy checks."""
    return Annotated[str, CleanStr(max_length, min_length, multiline)]


Text = Annotated[str, CleanStr(max_length=10_000, multiline=True)]
ShortStr = Annotated[str, CleanStr(max_length=200)]


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """``Annotated[str, EmailAddress()]``: one plain ``local@domain`` mailbox, nothing else.

    Refuses control characters and whitespace (header injection), ``,``/``;`` (recipient
    lists), display names, comments, quoted local parts and domain literals; the syntax is
    checked by ``email-validator`` without DNS. Returns the ASCII form with the domain
    lowercased (IDNA-encoded), ready for an SMTP envelope.
    """

    def validate(self, value: str) -> str:
        """Return the normalised address or raise ``PydanticCustomError``."""
        if len(value) > MAX_EMAIL_LENGTH:
            raise PydanticCustomError("email_too_long", "Email address is too long")
        if not value.isprintable() or " " in value:
            raise PydanticCustomError(
                "email_control_character",
                "Email address contains whitespace or a control character",
            )
        if "," in value or ";" in value:
            raise PydanticCustomError("email_multiple", "Exactly one email address is allowed")
        if any(ch in '<>"()[]\\:' for ch in value):
            raise _bad_email()
        try:
            result = validate_email(
                value,
                check_deliverability=False,
                allow_smtputf8=False,
                allow_display_name=False,
                allow_quoted_local=False,
                allow_domain_literal=False,
                allow_empty_local=False,
            )
        except EmailNotValidError:
            raise _bad_email() from None  # its message quotes the offending characters
        # email-validator also enforces 254 on this ASCII (IDNA-encoded) form.
        return result.ascii_email or result.normalized

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return _str_schema(self.validate)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _json_schema(schema, handler, {"format": "email", "maxLength": MAX_EMAIL_LENGTH})


def _bad_email() -> PydanticCustomError:
    return PydanticCustomError("email_invalid", "Value is not a valid email address")


SafeEmail = Annotated[str, EmailAddress()]


@dataclass(frozen=True, slots=True)
class SafeURL:
    """``Annotated[str, SafeURL(schemes=...)]``: a URL that passes ``netguard.check_url``.

    No credentials, no control or whitespace characters, a host, at most 2048 characters,
    and an IP-literal host must be public. Hostnames are NOT resolved here: the fetcher
    checks the address it actually connects to. Returns the normalised URL.
    """

    schemes: tuple[str, ...] = ("https",)

    def __post_init__(self) -> None:
        if not self.schemes or not set(self.schemes) <= set(DEFAULT_PORTS):
            raise ValueError("schemes must be a non-empty subset of ('http', 'https')")

    def validate(self, value: str) -> str:
        """Return the normalised URL or raise ``PydanticCustomError``."""
        try:
            return check_url(value, schemes=self.schemes).url
        except UnsafeURLError as exc:
            raise PydanticCustomError(
                "unsafe_url", "URL is not allowed ({reason})", {"reason": exc.reason}
            ) from None

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return _str_schema(self.validate)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _json_schema(schema, handler, {"format": "uri", "maxLength": MAX_URL_LENGTH})


def safe_url(schemes: tuple[str, ...] = ("https",)) -> Any:
    """Return ``Annotated[str, SafeURL(schemes)]``; prefer writing that form where mypy checks."""
    return Annotated[str, SafeURL(tuple(schemes))]


SafeHttpsUrl = Annotated[str, SafeURL()]


# --- JSON limits -------------------------------------------------------------------------

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
