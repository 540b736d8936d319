"""The leak guard's last resort: random-looking tokens, minus what is random by design.

A run of 24+ token characters that reads as random (entropy, few words, digits mixed in)
is taken for a generic key. Tuned against false alarms, these are left alone first:

* UUIDs and labelled digests (``sha256:...``, ``sha384-...``);
* bare digests: hex of an md5/sha1/sha224/sha256/sha384/sha512 length in one case, and
  padded base64 of an md5/sha1/sha256/sha512 digest, unless the few characters before
  them name a credential (``api key: <64 hex>`` is still a key);
* order numbers and invoice references after a word that says so (``ORD-``, ``invoice
  no.``, ``PO#``) and payment-provider object ids (``in_``, ``pi_``, ``cus_``, ``pk_live_``);
* the signature, credential and token parameters of presigned URLs (S3 ``X-Amz-*``,
  GCS ``X-Goog-*``, Azure SAS ``sig``, CloudFront ``Signature``/``Key-Pair-Id``);
* identifiers made of words, base64 of plain text and runs longer than :data:`MAX_TOKEN`.

Note: a random key shaped exactly like a digest, with no credential word before it, passes.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import string
from collections import Counter

__all__ = ["MAX_TOKEN", "high_entropy", "random_token"]

MAX_TOKEN = 512  # longer runs are data (base64 file content), not credentials

_MIN_TOKEN = 24
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_-]{24,}")
_ASSIGNMENT_RE = re.compile(r"=+(?=[^=])")  # an "=" inside a run; padding only ends one
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_EXEMPT_RE = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<labelled>(?i:(?<![a-z0-9])(?:sha-?(?:1|224|256|384|512)|sha3-(?:224|256|384|512)"
    r"|md5|blake2[bs]?)[:=-][A-Za-z0-9+/=_-]+))"
    r"|(?P<reference>(?<![A-Za-z0-9])(?:ORD|INV|PO|SO|(?i:order|invoice|receipt|booking"
    r"|shipment|tracking|transaction|txn|rma|ref))(?i:[ \t]{0,2}(?:no|nr|num|number|id)\.?)?"
    r"[ \t]{0,2}[#:_-]?[ \t]{0,2}[A-Za-z0-9][A-Za-z0-9/_-]{3,63})"
    r"|(?P<object_id>(?<![A-Za-z0-9_])(?:in|ii|il|pi|ch|cus|sub|py|re|cs|txn|po|prod|price"
    r"|evt|seti|src|tr|acct|pm|card|ba|pk_live|pk_test)_[A-Za-z0-9]{8,64}(?![A-Za-z0-9]))"
    r"|(?P<hex>(?<![A-Za-z0-9])[0-9a-fA-F]{32,128}(?![A-Za-z0-9]))"
    r"|(?P<b64>(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{22,86}={1,2}(?![A-Za-z0-9+/=]))"
)
_PRESIGNED_PARAM = re.compile(
    r"(?i:x-amz-signature|x-amz-security-token|x-amz-credential|x-goog-signature"
    r"|x-goog-credential|signature|sig|key-pair-id|policy)=[^&#\s\"'<>]*"
)
_MAX_PARAM = 8192  # how far back a token's parameter name is looked for
_DIGEST_HEX_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})
_DIGEST_B64_LENGTHS = frozenset({24, 28, 44, 88})  # padded md5, sha1, sha256, sha512
_CREDENTIAL_CONTEXT = re.compile(r"(?i)key|token|secret|passw|pwd|bearer|credential|auth")
_CONTEXT_CHARS = 24  # before a digest-shaped run, for a credential word
_CONTEXT_BEFORE = 64  # before a random-looking token, for every exemption to be seen

_WORDISH_RE = re.compile(r"[A-Z]?[a-z]{4,}|[A-Z]{5,}")
_WORD_SEGMENT_RE = re.compile(r"[A-Z]{2,}|[a-z]{2,}|[A-Z][a-z]+")
_SEGMENT_SPLIT_RE = re.compile(r"[_\-/+=]")
_DIGITS = frozenset(string.digits)
_LOWER = frozenset(string.ascii_lowercase)
_UPPER = frozenset(string.ascii_uppercase)
_MIN_HEX = 32  # 128 bits
_HEX_ENTROPY = 3.0  # bits per char; random hex sits near 3.6 at 32 chars, max 4
_MAX_WORDISH = 0.5  # identifiers are mostly words; random base64 has few long letter runs
_MAX_WORDISH_ONE_CASE = 0.3  # SOME_CONSTANT_V2, test_from_openssl_sha384
_MAX_VOWELS = 0.3  # English runs ~38% vowels; random letters 5/26


def high_entropy(text: str) -> bool:
    """True if ``text`` holds a random-looking token that none of the exemptions explain.

    The exemptions are looked for only around a token that reads as random, with
    :data:`_CONTEXT_BEFORE` characters before it: most text has no such token at all.
    """
    presigned_until = 0
    for match in _TOKEN_RE.finditer(text):
        if match.start() < presigned_until or not _random_run(match.group()):
            continue
        presigned_until = _presigned_value_end(text, match.start())
        if presigned_until:
            continue
        start = max(0, match.start() - _CONTEXT_BEFORE)
        window = _EXEMPT_RE.sub(_exempt, text[start : match.end()])  # keeps every offset
        if any(_random_run(t) for t in _TOKEN_RE.findall(window, match.start() - start)):
            return True
    return False


def _presigned_value_end(text: str, at: int) -> int:
    """Where the presigned-URL parameter value holding offset ``at`` ends, or 0 if none does."""
    low = max(0, at - _MAX_PARAM)
    start = max(text.rfind("&", low, at), text.rfind("?", low, at))
    param = _PRESIGNED_PARAM.match(text, start + 1) if start >= 0 else None
    return param.end() if param and param.end() > at else 0


def _random_run(run: str) -> bool:
    if len(run) > MAX_TOKEN:
        return False
    for token in _ASSIGNMENT_RE.split(run):  # name=value: judge the value alone
        if len(token) < _MIN_TOKEN:
            continue
        if _random_hex(token) if _HEX_RE.fullmatch(token) else random_token(token):
            return True
    return False


def _exempt(match: re.Match[str]) -> str:
    """Blanks for a span that is random by design, or the span itself to test it."""
    value = match.group()
    if match.lastgroup == "hex":
        shaped = len(value) in _DIGEST_HEX_LENGTHS and (value.islower() or value.isupper())
    elif match.lastgroup == "b64":
        shaped = len(value) in _DIGEST_B64_LENGTHS
    else:
        return " " * len(value)
    before = match.string[max(0, match.start() - _CONTEXT_CHARS) : match.start()]
    return value if not shaped or _CREDENTIAL_CONTEXT.search(before) else " " * len(value)


def _random_hex(token: str) -> bool:
    # All digits is a number (an order or phone number), not a key.
    has_letter = not token.isdigit()
    return len(token) >= _MIN_HEX and has_letter and _entropy(token) >= _HEX_ENTROPY


def random_token(token: str) -> bool:
    """True if a base64/base62/base36-looking token reads as random rather than as words.

    Thresholds sit near the 1st percentile of random tokens of the same length and
    alphabet (random base64 averages ~log2(n) - 0.3 bits/char up to n~40).
    """
    n = len(token)
    chars = set(token)
    has_lower = not chars.isdisjoint(_LOWER)
    has_upper = not chars.isdisjoint(_UPPER)
    if chars.isdisjoint(_DIGITS) or not (has_lower or has_upper):
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
