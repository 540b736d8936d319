"""Leak guard: refuse secret-looking values in fields that are not declared secret.

A client that puts a password in ``notes`` instead of the declared ``smtp.password`` would
send it past the vault onto the broker, into logs and results. :func:`scan` walks the
payload and reports each such field; :func:`check` raises for the first. Findings name
the field and the kind of secret, never the value.

Each string is NFKC-normalised (fullwidth and other compatibility forms become ASCII) and
stripped of zero-width characters first. Then, most specific first:

* base64 inside it (:mod:`security.leak_decode`): images and long data go through, a DER
  private key or ``Basic`` credential is found, decoded text gets every check below;
* known credential formats, whole or split by spaces, dashes or newlines
  (:mod:`security.leak_formats`);
* field names that say "secret" (``password``, ``api_key``, a ``{"name": "Authorization",
  "value": ...}`` pair);
* generic random-looking tokens, minus digests, UUIDs, order references and presigned-URL
  signatures (:mod:`security.leak_entropy`).

See ``docs/leak-guard.md`` for what it catches, what it lets through, and its limits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from security.errors import InputRejectedError, LeakDetectedError
from security.leak_decode import Budget, basic_credential, has_run, unwrap_base64
from security.leak_entropy import high_entropy
from security.leak_formats import format_kind

__all__ = ["DEFAULT_MAX_DEPTH", "Finding", "check", "scan"]

DEFAULT_MAX_DEPTH = 32
_MAX_BASE64_NESTING = 2  # levels checked in full inside base64; one more gets formats only

# Invisible characters that split a token without showing (NFKC keeps them).
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))

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
# Field names whose values are random by design: digests, and order or booking references.
_RANDOM_BY_DESIGN_WORDS = frozenset(
    {"checksum", "checksums", "digest", "digests", "hash", "hashes", "etag", "etags", "md5"}
    | {"fingerprint", "fingerprints", "commit", "commits", "integrity"}
    | {"order", "orders", "invoice", "invoices", "receipt", "receipts", "booking"}
    | {"reservation", "confirmation", "shipment", "tracking", "reference", "ref"}
)

_DIGEST_NAME_RE = re.compile(r"sha[0-9]|md5|blake2|crc32")
_WORD_SPLIT_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


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
            key_kind = format_kind(_normalise(name))
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


def _normalise(text: str) -> str:
    """``text`` as the detectors read it: NFKC, without zero-width characters."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)


def _value_kind(text: str, path: list[str]) -> str | None:
    text = _normalise(text)
    # Only the entropy test reads the field name, and only a long run reaches it.
    long_run = has_run(text)
    return _classify(
        text,
        random_field=long_run and _names_random_by_design(path),
        budget=Budget(),
        long_run=long_run,
    )


def _classify(
    text: str, *, random_field: bool, budget: Budget, depth: int = 0, long_run: bool | None = None
) -> str | None:
    """The kind of secret ``text`` (already normalised) looks like, or None."""

    def inner(decoded: str) -> str | None:
        if depth >= _MAX_BASE64_NESTING:
            return format_kind(_normalise(decoded))
        return _classify(_normalise(decoded), random_field=False, budget=budget, depth=depth + 1)

    # Without a 16-character run there is no base64 to decode and no key-length token:
    # one search settles both for most prose.
    if long_run is None:
        long_run = has_run(text)
    found, rest = None, text
    if basic_credential(text, budget):
        found = "basic_auth"
    elif long_run:
        found, rest = unwrap_base64(text, inner, budget)
    kind = format_kind(rest) or found
    if kind:
        return kind
    if long_run and not random_field and high_entropy(rest):
        return "high_entropy"
    return None


def _names_random_by_design(path: list[str]) -> bool:
    """True if the nearest named field holds a digest or reference (``sha256``, ``order_id``)."""
    for segment in reversed(path):
        if segment.isdigit():
            continue  # a list index: look at the field that holds the list
        words = _words(segment)
        return any(w in _RANDOM_BY_DESIGN_WORDS for w in words) or bool(
            _DIGEST_NAME_RE.search("".join(words))
        )
    return False


# --- what a field name says ------------------------------------------------------------


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT_RE.findall(name)]


def _sensitive_name(name: str) -> bool:
    words = _words(_normalise(name))
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
