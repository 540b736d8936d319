"""Known credential formats for the leak guard, whole or split into pieces.

A format is recognised by its literal prefix (``AKIA``, ``ghp_``, ``sk_live_``, ``eyJ``...),
which must be intact; after it, a split form may have up to three spaces, newlines or
dashes between any two characters (``AKIA IOSF ODNN ...``, a token wrapped over lines).
A split match must also end where a piece ends and its body, squeezed, must look like a
credential body (random characters, a JWT header that decodes to JSON), so that prose
which merely follows a prefix (``sk_live_ keys never go in notes``) is not mistaken.

Every pattern is anchored on a literal prefix with a look-behind and has bounded
repetition; a split form is tried only from the first :data:`MAX_SPLIT_TRIES` places its
prefix occurs, so scanning stays linear on hostile input (``"eyJ " * 50_000``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from security.leak_entropy import random_token

__all__ = ["ANY_PREFIX", "MAX_SPLIT_TRIES", "PREFIXES", "format_kind"]

MAX_SPLIT_TRIES = 8

_SLACK_BODY = re.compile(r"[0-9]+-[A-Za-z0-9]+-")

_AWS_PREFIX = "(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)"
_SEP = r"[\s-]{0,3}"  # between two pieces of a body that has no dash of its own
_WS = r"\s{0,3}"  # ... and of one that does (a dash there is part of the token)


def _piece(alphabet: str, count: str, sep: str = _SEP) -> str:
    return f"(?P<body>(?:{sep}[{alphabet}]){count})"


def _split(prefix: str, body: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Where a split form may start, and the whole of it from there."""
    return re.compile(prefix), re.compile(prefix + body)


def _upper_body(body: str) -> bool:
    """An upper-case body (AWS key ids are base32): digits in it, or too few vowels for words."""
    letters = [c for c in body if c.isalpha()]
    vowels = sum(c in "AEIOU" for c in letters) / max(len(letters), 1)
    return (any(c.isdigit() for c in body) and vowels <= 0.4) or vowels <= 0.2


def _slack_body(body: str) -> bool:
    # xoxb-<team digits>-<user digits>-<secret>, xapp-<n>-<app id>-<digits>-<secret>
    return _SLACK_BODY.match(body) is not None


def _jwt_header(body: str) -> bool:
    """True if ``eyJ`` + ``body`` decodes (base64url) to a JSON object naming an algorithm."""
    text = "eyJ" + body
    try:
        header = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return header.startswith(b'{"') and b'"alg"' in header


@dataclass(frozen=True, slots=True)
class _Format:
    kind: str
    whole: re.Pattern[str]
    split: tuple[re.Pattern[str], re.Pattern[str]] | None = None  # (prefix, prefix + body)
    body_ok: Callable[[str], bool] = random_token
    squeeze: re.Pattern[str] = re.compile(r"[\s-]+")


_FORMATS: tuple[_Format, ...] = (
    _Format(
        "private_key_block",
        # Whitespace-tolerant on its own: "-----BEGIN RSA PRIVATE\nKEY-----" is one header.
        re.compile(r"-{3,8}\s{0,3}BEGIN[\sA-Z0-9]{0,40}?PRIVATE\s{1,3}KEY"),
    ),
    _Format(
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        _split(
            r"(?<![A-Za-z0-9_-])eyJ",
            rf"{_piece('A-Za-z0-9_-', '{4,512}?', _WS)}{_WS}\.(?:{_WS}[A-Za-z0-9_-]){{4}}",
        ),
        _jwt_header,
        re.compile(r"\s+"),
    ),
    _Format(
        "aws_access_key_id",
        re.compile(rf"(?<![A-Za-z0-9]){_AWS_PREFIX}[A-Z0-9]{{16}}(?![A-Za-z0-9])"),
        _split(rf"(?<![A-Za-z0-9]){_AWS_PREFIX}", rf"{_piece('A-Z0-9', '{16}')}(?![A-Za-z0-9])"),
        _upper_body,
    ),
    _Format(
        "github_token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        _split(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_|github_pat_)",
            rf"(?<=_)(?:(?<=h[pousr]_){_piece('A-Za-z0-9', '{30,40}?')}"
            rf"|(?<=t_)(?P<pat>(?:{_SEP}[A-Za-z0-9_]){{22,128}}?))(?![A-Za-z0-9_])",
        ),
    ),
    _Format(
        "stripe_key",
        re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"),
        _split(
            r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_",
            rf"{_piece('A-Za-z0-9', '{16,128}?')}(?![A-Za-z0-9])",
        ),
    ),
    _Format(
        "slack_token",
        re.compile(r"(?<![A-Za-z0-9-])(?:xox[abposr]-|xapp-)[A-Za-z0-9-]{10,}"),
        _split(
            r"(?<![A-Za-z0-9-])(?:xox[abposr]-|xapp-)",
            rf"{_piece('A-Za-z0-9-', '{32,128}?', _WS)}(?![A-Za-z0-9-])",
        ),
        _slack_body,
        re.compile(r"\s+"),
    ),
    _Format(
        "slack_webhook",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,}"),
    ),
    _Format(
        "google_api_key",
        re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}"),
        _split(
            r"(?<![A-Za-z0-9_-])AIza", rf"{_piece('A-Za-z0-9_-', '{35}', _WS)}(?![A-Za-z0-9_-])"
        ),
        squeeze=re.compile(r"\s+"),
    ),
    # scheme://user:password@ (user may be empty, as in redis://:pw@host)
    _Format("url_credentials", re.compile(r"://[^/\s:@]*:[^/\s@]+@")),
)

# Every literal prefix above, as plain substrings, and one factored pattern that finds any
# of them: text without one (most payload text) skips the individual patterns entirely.
PREFIXES = (
    "BEGIN", "eyJ", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA",
    "ANVA", "AROA", "APKA", "ASCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "k_live_", "k_test_", "xox", "xapp-", "hooks.slack.com", "AIza", "://",
)  # fmt: skip
ANY_PREFIX = re.compile(
    r"BEGIN|eyJ|A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA|Iza)|gh[pousr]_"
    r"|github_pat_|k_(?:live|test)_|x(?:ox|app-)|hooks\.slack\.com|://"
)

# Which format each prefix starts: only those whose prefix occurs are tried.
_PREFIX_KIND = {
    prefix: (
        "private_key_block" if prefix == "BEGIN"
        else "jwt" if prefix == "eyJ"
        else "google_api_key" if prefix == "AIza"
        else "aws_access_key_id" if prefix.startswith("A")
        else "github_token" if prefix.startswith("g")
        else "stripe_key" if prefix.startswith("k_")
        else "slack_token" if prefix.startswith("x")
        else "slack_webhook" if prefix.startswith("hooks")
        else "url_credentials"
    )
    for prefix in PREFIXES
}  # fmt: skip

# A presigned S3 URL carries the access key id in the clear, by design: it is public once
# the URL is shared, and the URL's signature is what grants access.
_PRESIGNED_KEY_ID = re.compile(
    rf"[?&](?:X-Amz-Credential|AWSAccessKeyId)={_AWS_PREFIX}[A-Z0-9]{{16}}(?![A-Za-z0-9])"
)
_PRESIGNED_SIGNATURE = re.compile(r"[?&](?:X-Amz-)?Signature=")


def format_kind(text: str) -> str | None:
    """The kind of the first known credential format in ``text``, whole or split, if any."""
    if not ANY_PREFIX.search(text):
        return None
    if ("Amz-Credential=" in text or "AccessKeyId=" in text) and _PRESIGNED_SIGNATURE.search(text):
        text = _PRESIGNED_KEY_ID.sub("&", text)
    present = {_PREFIX_KIND[match.group()] for match in ANY_PREFIX.finditer(text)}
    formats = [fmt for fmt in _FORMATS if fmt.kind in present]
    for fmt in formats:
        if fmt.whole.search(text):
            return fmt.kind
    for fmt in formats:
        if _split_match(fmt, text):
            return fmt.kind
    return None


def _split_match(fmt: _Format, text: str) -> bool:
    """True if one of the first :data:`MAX_SPLIT_TRIES` prefixes starts a split credential."""
    if fmt.split is None:
        return False
    start, whole = fmt.split
    for tries, prefix in enumerate(start.finditer(text)):
        if tries >= MAX_SPLIT_TRIES:
            break
        match = whole.match(text, prefix.start())
        body = match and (match.group("body") or match.groupdict().get("pat"))
        if body and fmt.body_ok(fmt.squeeze.sub("", body)):
            return True
    return False
