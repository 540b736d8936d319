"""Leak guard: refuse secret-looking values in fields that are not declared secret.

A client that puts a password in ``notes`` instead of the declared ``smtp.password`` would
send it past the vault onto the broker, into logs and results. :func:`scan` walks the
payload and reports each such field; :func:`check` raises for the first. Findings name
the field and the kind of secret, never the value.

Three families of signal, most specific first: known credential formats (AWS, GitHub,
Stripe, Slack, Google, PEM private keys, JWTs, URLs with a password), field names that
say "secret" (``password``, ``api_key``, a ``{"name": "Authorization", "value": ...}``
pair), and generic high-entropy tokens. The entropy test is tuned against false alarms:
UUIDs, labelled digests (``sha256:...``, or any hex/base64 under a ``checksum`` /
``digest`` / ``hash`` field), identifiers made of words, base64 of plain text and long
data blobs are left alone.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from security.errors import InputRejectedError, LeakDetectedError

__all__ = ["DEFAULT_MAX_DEPTH", "Finding", "check", "scan"]

DEFAULT_MAX_DEPTH = 32

# Known formats. Every pattern is anchored on a literal prefix and, where its body can
# contain the prefix again, a look-behind, so scanning stays linear on hostile input.
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key_block", re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")),
    (
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    ),
    (
        "aws_access_key_id",
        re.compile(
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)"
            r"[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
    ),
    (
        "github_token",
        re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("stripe_key", re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}")),
    ("slack_token", re.compile(r"(?<![A-Za-z0-9-])(?:xox[abposr]-|xapp-)[A-Za-z0-9-]{10,}")),
    (
        "slack_webhook",
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{8,}"),
    ),
    ("google_api_key", re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}")),
    # scheme://user:password@ (user may be empty, as in redis://:pw@host)
    ("url_credentials", re.compile(r"://[^/\s:@]*:[^/\s@]+@")),
)

# Every literal prefix above, as plain substrings: ``in`` runs in C, so text without any
# of them (most payload text) skips the individual patterns entirely.
_PREFIXES = (
    "-----BEGIN", "eyJ", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA",
    "ANVA", "AROA", "APKA", "ASCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "k_live_", "k_test_", "xox", "xapp-", "hooks.slack.com", "AIza", "://",
)  # fmt: skip
# Some prefix of _PREFIXES occurs in the text: one factored pattern (the engine skips
# to the few possible first characters) instead of one substring scan per prefix.
_ANY_PREFIX = re.compile(
    r"-----BEGIN|eyJ|A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA|Iza)|gh[pousr]_"
    r"|github_pat_|k_(?:live|test)_|x(?:ox|app-)|hooks\.slack\.com|://"
)

# Field names. A name is split into lower-case words (camelCase, snake_case, kebab-case).
_SENSITIVE_WORDS = frozenset(
    {"password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "auth"}
    | {"authorization", "credential", "credentials", "apikey", "privatekey", "bearer"}
)
_SENSITIVE_SUFFIXES = (  # of the words joined: "x-api-key" -> "xapikey"
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "sessionkey",
    "credentials",
)
# A last word that makes the field *about* a secret rather than the secret itself.
_DESCRIPTORS = frozenset(
    {"type", "method", "mode", "scheme", "url", "uri", "endpoint", "host", "port", "name"}
    | {"label", "hint", "field", "path", "file", "count", "length", "len", "size", "min"}
    | {"max", "ttl", "expiry", "expires", "expiration", "at", "version", "format", "policy"}
    | {"provider", "enabled", "required", "strength", "rotation", "prompt", "reset"}
)
_PAIR_NAME_KEYS = ("name", "key", "header", "field")  # {"name": "Authorization", "value": ...}
_DIGEST_WORDS = frozenset(
    {"checksum", "checksums", "digest", "digests", "hash", "hashes", "etag", "etags", "md5"}
    | {"fingerprint", "fingerprints", "commit", "commits", "integrity"}
)

# Generic entropy test.
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_-]{24,}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_LABELLED_DIGEST_RE = re.compile(
    r"(?i)(?<![a-z0-9])(?:sha-?(?:1|224|256|384|512)|sha3-(?:224|256|384|512)|md5|blake2[bs]?)"
    r"[:=-][A-Za-z0-9+/=_-]+"
)
_DIGEST_NAME_RE = re.compile(r"sha[0-9]|md5|blake2|crc32")
_WORDISH_RE = re.compile(r"[A-Z]?[a-z]{4,}|[A-Z]{5,}")
_WORD_SEGMENT_RE = re.compile(r"[A-Z]{2,}|[a-z]{2,}|[A-Z][a-z]+")
_SEGMENT_SPLIT_RE = re.compile(r"[_\-/+=]")
_WORD_SPLIT_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_MIN_HEX = 32  # 128 bits
_MAX_TOKEN = 512  # longer runs are data (base64 file content), not credentials
_HEX_ENTROPY = 3.0  # bits per char; random hex sits near 3.6 at 32 chars, max 4
_MAX_WORDISH = 0.5  # identifiers are mostly words; random base64 has few long letter runs
_MAX_WORDISH_ONE_CASE = 0.3  # SOME_CONSTANT_V2, test_from_openssl_sha384
_MAX_VOWELS = 0.3  # English runs ~38% vowels; random letters 5/26


@dataclass(frozen=True)
class Finding:
    """A field that looks like it carries a secret: its dotted path and what it looks like."""

    field: str
    kind: str


def scan(
    payload: Any, *, secret_paths: Sequence[str] = (), max_depth: int = DEFAULT_MAX_DEPTH
) -> list[Finding]:
    """Every field outside ``secret_paths`` whose value or name looks like a secret.

    Paths are dotted with list indices as numbers (``headers.0.value``); ``secret_paths``
    may use ``*`` for any key or index, and a declared path covers everything below it.
    Raises :class:`InputRejectedError` (reason ``too_deep``) past ``max_depth``.
    """
    declared = [p.split(".") for p in secret_paths]
    findings: list[Finding] = []
    _walk(payload, [], declared, max_depth, findings)
    return findings


def check(
    payload: Any, *, secret_paths: Sequence[str] = (), max_depth: int = DEFAULT_MAX_DEPTH
) -> None:
    """Raise :class:`LeakDetectedError` for the first finding of :func:`scan`, if any."""
    findings = scan(payload, secret_paths=secret_paths, max_depth=max_depth)
    if findings:
        first = findings[0]
        raise LeakDetectedError(
            f"field {first.field!r} looks like it holds a secret ({first.kind}); "
            "send it in a field declared secret",
            field=first.field,
        )


def _walk(
    node: Any, path: list[str], declared: list[list[str]], max_depth: int, out: list[Finding]
) -> None:
    if _is_declared(path, declared):
        return
    if len(path) > max_depth:
        raise InputRejectedError(
            f"payload nested deeper than {max_depth} at {_dotted(path[:max_depth])!r}",
            field=_dotted(path[:max_depth]),
            reason="too_deep",
        )
    if isinstance(node, str):
        kind = _value_kind(node, path)
        if kind:
            out.append(Finding(_dotted(path), kind))
    elif isinstance(node, Mapping):
        for key, value in node.items():
            name = str(key)
            key_kind = _format_kind(name)
            if key_kind:
                # Keep the key out of every reported path: it is the secret.
                name = "<key>"
                out.append(Finding(_dotted([*path, name]), key_kind))
            child = [*path, name]
            if _name_flags(name, value, node) and not _is_declared(child, declared):
                out.append(Finding(_dotted(child), "secret_field_name"))
                continue
            _walk(value, child, declared, max_depth, out)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _walk(value, [*path, str(i)], declared, max_depth, out)


def _is_declared(path: list[str], declared: list[list[str]]) -> bool:
    return any(
        len(d) == len(path) and all(p in ("*", c) for p, c in zip(d, path, strict=True))
        for d in declared
    )


def _dotted(path: list[str]) -> str:
    return ".".join(path) or "<root>"


# --- what a value looks like -----------------------------------------------------------


def _format_kind(text: str) -> str | None:
    if not _ANY_PREFIX.search(text):
        return None
    for kind, pattern in _FORMATS:
        if pattern.search(text):
            return kind
    return None


def _value_kind(text: str, path: list[str]) -> str | None:
    kind = _format_kind(text)
    if kind:
        return kind
    if _high_entropy(text, digest_field=_names_digest(path)):
        return "high_entropy"
    return None


def _names_digest(path: list[str]) -> bool:
    """True if the nearest named field says it holds a digest (``checksum``, ``sha256``...)."""
    for segment in reversed(path):
        if segment.isdigit():
            continue  # a list index: look at the field that holds the list
        words = _words(segment)
        return any(w in _DIGEST_WORDS for w in words) or bool(
            _DIGEST_NAME_RE.search("".join(words))
        )
    return False


def _high_entropy(text: str, *, digest_field: bool) -> bool:
    if digest_field or not _TOKEN_RE.search(text):
        return False  # no run long enough to be a key: the common case for prose
    # UUIDs and labelled digests are random by design and not credentials.
    text = _LABELLED_DIGEST_RE.sub(" ", _UUID_RE.sub(" ", text))
    for token in _TOKEN_RE.findall(text):
        if len(token) > _MAX_TOKEN:
            continue
        if _HEX_RE.fullmatch(token):
            if _random_hex(token):
                return True
        elif _random_token(token):
            return True
    return False


def _random_hex(token: str) -> bool:
    # All digits is a number (an order or phone number), not a key.
    has_letter = any(c.isalpha() for c in token)
    return len(token) >= _MIN_HEX and has_letter and _entropy(token) >= _HEX_ENTROPY


def _random_token(token: str) -> bool:
    """True if a base64/base62/base36-looking token reads as random rather than as words.

    Thresholds sit near the 1st percentile of random tokens of the same length and
    alphabet (random base64 averages ~log2(n) - 0.3 bits/char up to n~40).
    """
    n = len(token)
    has_lower = any(c.islower() for c in token)
    has_upper = any(c.isupper() for c in token)
    if not any(c.isdigit() for c in token) or not (has_lower or has_upper):
        return False  # all letters is a word or a name; all digits is a number
    if has_lower and has_upper:
        threshold = min(0.82 * math.log2(n), 4.4)
        random_looking = _wordish(token, runs=True) < _MAX_WORDISH
    else:
        # One case, so letter runs are common by chance: vowels tell words apart instead.
        threshold = min(0.76 * math.log2(n), 4.2)
        letters = [c for c in token.lower() if c.isalpha()]
        random_looking = (
            _wordish(token, runs=False) < _MAX_WORDISH_ONE_CASE
            and sum(c in "aeiou" for c in letters) / len(letters) < _MAX_VOWELS
        )
    return _entropy(token) >= threshold and random_looking and not _encoded_text(token)


def _wordish(token: str, *, runs: bool) -> float:
    """Share of ``token`` made of words: whole alphabetic segments (and letter runs)."""
    total = 0
    for segment in _SEGMENT_SPLIT_RE.split(token):
        if _WORD_SEGMENT_RE.fullmatch(segment):
            total += len(segment)
        elif runs:
            total += sum(len(m) for m in _WORDISH_RE.findall(segment))
    return total / len(token)


def _encoded_text(token: str) -> bool:
    """True if ``token`` is base64 (standard or urlsafe) of printable text."""
    body = token.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    for altchars in (None, b"-_"):
        try:
            text = base64.b64decode(padded, altchars=altchars, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            continue
        if all(c.isprintable() or c.isspace() for c in text):
            return True
    return False


def _entropy(token: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


# --- what a field name says ------------------------------------------------------------


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT_RE.findall(name)]


def _sensitive_name(name: str) -> bool:
    words = _words(name)
    if not words:
        return False
    if len(words) > 1 and words[-1] in _DESCRIPTORS:
        return False
    return "".join(words).endswith(_SENSITIVE_SUFFIXES) or any(w in _SENSITIVE_WORDS for w in words)


def _name_flags(name: str, value: Any, siblings: Mapping[Any, Any]) -> bool:
    """True if ``value`` is a non-empty string that its name (or paired name) calls secret."""
    if not isinstance(value, str) or not value.strip():
        return False
    if _sensitive_name(name):
        return True
    if name != "value":
        return False
    paired = (siblings.get(k) for k in _PAIR_NAME_KEYS)
    return any(isinstance(p, str) and _sensitive_name(p) for p in paired)
