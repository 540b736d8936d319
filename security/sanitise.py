"""Reusable pydantic v2 types for task payload schemas (JSON limits: :mod:`security.json_limits`).

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

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from security.errors import UnsafeURLError
from security.json_limits import check_json_limits, loads_limited
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
