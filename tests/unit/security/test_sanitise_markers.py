"""Tests for security.sanitise's e-mail and HTTPS URL markers.

What ``SafeEmail`` and ``SafeHttpsUrl`` normalise and refuse, their JSON schemas, and the
markers composed inside a model.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter

from security.sanitise import (
    CleanStr,
    EmailAddress,
    SafeEmail,
    SafeHttpsUrl,
    SafeURL,
    Text,
    safe_url,
)
from tests.support.validation import first_error

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
