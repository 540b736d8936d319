"""Base64 inside a value: images and data go through, credentials inside are found.

Clients send images and files as base64, on one line, in a ``data:`` URL or wrapped at 64
or 76 columns (what ``base64`` and MIME/PEM tools write); and a credential is base64 in a
``Basic`` header value or when someone "hides" it. :func:`unwrap_base64` finds each run
(a wrapped block is one run when its lines have one width) and judges it by its bytes:

* an image (PNG, JPEG, GIF, WebP magic bytes) is cut out of the text: not a credential;
* a DER private key (PKCS#1, PKCS#8, SEC1, OpenSSH) is a finding, header or not, and a
  certificate or public key (X.509, SubjectPublicKeyInfo, SSH) is cut out like an image
  (:mod:`security.leak_keys`);
* printable text is handed to the caller's detectors (the same ones as for plain text)
  and stays in the text;
* anything else stays for the entropy test, joined if it was wrapped, or is cut out as
  data when longer than :data:`~security.leak_entropy.MAX_TOKEN` characters.

:func:`basic_credential` finds ``Basic <base64>`` whose value decodes to ``user:password``.

Cost is bounded: at most :data:`MAX_CANDIDATES` runs per value are decoded, each in full
only up to :data:`MAX_DECODE` characters (longer ones only have their first bytes sniffed);
the caller limits nesting (base64 inside base64) to a fixed depth.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from security.leak_entropy import MAX_TOKEN
from security.leak_keys import key_material

__all__ = ["MAX_CANDIDATES", "MAX_DECODE", "Budget", "basic_credential", "has_run", "unwrap_base64"]

MAX_CANDIDATES = 32
MAX_DECODE = 16 * 1024

_MIN_RUN = 16
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_RUN_TABLE = bytes(0x61 if byte in _B64_ALPHABET else 0x20 for byte in range(256))
_RUN_MARKS = b"a" * _MIN_RUN
_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}(?:\r?\n[A-Za-z0-9+/_-]{4,}={0,2})*")
_BASIC = re.compile(
    r"(?<![A-Za-z0-9])(?i:basic)[ \t]{1,3}([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"
)
_PEM_ARMOUR = re.compile(r"-----(?:BEGIN|END)[A-Z0-9 ]{0,60}-----")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SNIFF = 24  # characters: 18 bytes, enough for every magic number below
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")

Inner = Callable[[str], str | None]
# What becomes of a run that holds no credential: left as written, blanked out (an image,
# long data), or joined into one line if it was wrapped (short binary: a possible key).
_KEEP, _BLANK, _JOIN = "keep", "blank", "join"


@dataclass(slots=True)
class Budget:
    """Decoding left for one value, shared by every nested level."""

    candidates: int = MAX_CANDIDATES


def has_run(text: str) -> bool:
    """True if ``text`` has a run long enough for base64 worth decoding (or for a key).

    A byte table marks the base64 alphabet and a substring search finds 16 marks in a
    row: ten times faster than a regex on prose, where every word is a partial match.
    """
    return _RUN_MARKS in text.encode("utf-8", "surrogatepass").translate(_RUN_TABLE)


def basic_credential(text: str, budget: Budget) -> bool:
    """True if ``text`` holds ``Basic <base64 of user:password>``, as an HTTP header does."""
    if "asic" not in text and "ASIC" not in text:
        return False
    for match in _BASIC.finditer(text):
        if budget.candidates <= 0:
            break
        budget.candidates -= 1
        if _credential_pair(_decode(match.group(1), None)):
            return True
    return False


def unwrap_base64(text: str, inner: Inner, budget: Budget) -> tuple[str | None, str]:
    """``(kind, rest)``: a credential found through base64, and the text left to test.

    ``rest`` is ``text`` with images and long data blanked out and wrapped binary joined
    into one run, so the entropy test judges a blob once, not line by line.
    """
    pieces: list[str] = []
    last = 0
    # PEM armour lines would join the body as runs of their own ("CERTIFICATE-----"):
    # blank them for the search, offsets unchanged, so the body is one even block.
    searched = _PEM_ARMOUR.sub(_spaces, text) if "-----" in text else text
    for match in _RUN.finditer(searched):
        if budget.candidates <= 0:
            break  # what is left stays as written, for the entropy test
        lines = [line.rstrip("\r") for line in match.group().split("\n")]
        joined = "".join(lines)
        # An image is one run however it was wrapped (the image task accepts any width).
        wrapped = len(lines) > 1 and (_evenly_wrapped(lines) or _starts_an_image(joined))
        out: list[str] = []
        changed = False
        for unit in [joined] if wrapped else lines:
            action = _KEEP
            if len(unit) >= _MIN_RUN and _mixed_case(unit) and budget.candidates > 0:
                budget.candidates -= 1
                kind, action = _inspect(unit, inner)
                if kind:
                    return kind, text
            blank = action == _BLANK
            changed |= blank or (action == _JOIN and wrapped)
            out.append(" " if blank else unit)
        if changed:
            pieces += [text[last : match.start()], "\n".join(out)]
            last = match.end()
    if not pieces:
        return None, text
    pieces.append(text[last:])
    return None, "".join(pieces)


def _spaces(match: re.Match[str]) -> str:
    return " " * len(match.group())


def _mixed_case(unit: str) -> bool:
    """Base64 of 12+ bytes has both cases; hex, numbers, words and constants do not."""
    head = unit[:64]  # enough to tell, and case tests are slow on a megabyte
    return not (head.islower() or head.isupper()) and head.swapcase() != head


def _evenly_wrapped(lines: list[str]) -> bool:
    """True for lines of one width (a multiple of 4, 32 or more) and a shorter last one."""
    width = len(lines[0])
    return (
        width >= 32
        and width % 4 == 0
        and all(len(line) == width for line in lines[1:-1])
        and 0 < len(lines[-1]) <= width
    )


def _head(unit: str) -> bytes | None:
    """The first bytes ``unit`` decodes to, in whichever base64 alphabet it uses."""
    return _decode(unit[:_SNIFF], _altchars(unit[:_SNIFF]))


def _altchars(unit: str) -> bytes | None:
    """``b"-_"`` for urlsafe base64, None for standard (a mix of both then fails to decode)."""
    return b"-_" if ("-" in unit or "_" in unit) and not ("+" in unit or "/" in unit) else None


def _starts_an_image(unit: str) -> bool:
    head = _head(unit)
    return head is not None and _is_image(head)


def _is_image(head: bytes) -> bool:
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _inspect(unit: str, inner: Inner) -> tuple[str | None, str]:
    """``(kind, action)`` for one base64 run: a finding, or what to do with the run."""
    head = _head(unit)
    if head is None:
        return None, _KEEP
    sniffed = _sniff(head)
    if sniffed is not None:
        return sniffed
    if len(unit) > MAX_DECODE:
        return None, _BLANK  # data, too long to read on the hot path
    text = _text(head if len(unit) <= _SNIFF else _decode(unit, _altchars(unit)))
    if text is None:
        return None, _BLANK if len(unit) > MAX_TOKEN else _JOIN
    kind = inner(text)
    if kind and not kind.endswith("_in_base64"):
        kind += "_in_base64"
    return kind, _KEEP  # the entropy test knows base64 of text; a JWT part stays whole


def _sniff(head: bytes) -> tuple[str | None, str] | None:
    """What the first decoded bytes alone settle: an image, a private or a public key."""
    if _is_image(head):
        return None, _BLANK
    material = key_material(head)
    if material == "private":
        return "private_key_der", _KEEP
    return (None, _BLANK) if material == "public" else None


def _decode(run: str, altchars: bytes | None) -> bytes | None:
    body = run.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(data: bytes | None) -> str | None:
    """``data`` as text if it is UTF-8 without control characters (tabs and newlines aside)."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _credential_pair(data: bytes | None) -> bool:
    """True for ``user:password`` (what HTTP Basic carries), both sides non-empty."""
    text = _text(data)
    if text is None:
        return False
    user, colon, password = text.partition(":")
    return bool(colon and user.strip() and password.strip()) and "\n" not in text
