"""Tests for ``image.thumbnail``'s refusals: crafted bombs and bad input.

Pixel bombs refused from the header without decoding, truncated images, formats outside
the allow-list, bad base64, size caps, sources and options; refusals are not retried.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import pytest
from PIL import Image, ImageFile
from pydantic import ValidationError

from security.errors import InputRejectedError
from tests.support.images import HOST, SPEC
from tests.support.images import b64 as _b64
from tests.support.images import encode_image as _encode
from tests.support.images import rejected_reason as _rejected_reason
from tests.support.images import thumb as _thumb
from workers.demo.image import (
    MAX_INPUT_BYTES,
    MAX_PIXELS,
    Thumbnail,
    UpstreamUnavailableError,
    make_thumbnail,
)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a tiny IDAT: a bomb by header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --- bombs and refusals -----------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decoding fail loudly, to prove a refusal came from the header."""

    def forbidden(self: Any) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    monkeypatch.setattr(Image.Image, "load", forbidden)


def test_header_bomb_is_refused_without_decoding(no_decoding: None) -> None:
    """A 20000x20000 PNG (400 MP) is refused from its header alone."""
    data = _png_header_only(20_000, 20_000)
    assert len(data) < 200
    assert _rejected_reason(lambda: _thumb(data)) == "too_many_pixels"


def test_image_just_over_the_pixel_cap_is_refused(no_decoding: None) -> None:
    """Pillow's warning band (MAX..2*MAX) is a refusal too, not a warning."""
    side = int(MAX_PIXELS**0.5) + 1
    assert _rejected_reason(lambda: _thumb(_png_header_only(side, side))) == "too_many_pixels"


def test_pixel_cap_holds_even_if_global_limit_was_loosened(
    monkeypatch: pytest.MonkeyPatch, no_decoding: None
) -> None:
    """Another module setting MAX_IMAGE_PIXELS = None does not disable the cap."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert _rejected_reason(lambda: _thumb(_png_header_only(20_000, 20_000))) == ("too_many_pixels")
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS


def test_truncated_image_is_refused_even_if_truncation_was_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LOAD_TRUNCATED_IMAGES is forced off per call; truncated data is invalid_image."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = _encode(Image.effect_noise((200, 200), 50).convert("RGB"), "PNG")
    assert _rejected_reason(lambda: _thumb(data[: len(data) // 2])) == "invalid_image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "data",
    [
        _encode(Image.new("RGB", (10, 10)), "BMP"),
        _encode(Image.new("RGB", (10, 10)), "TIFF"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"just some text",
    ],
)
def test_formats_outside_the_allow_list_are_refused(data: bytes) -> None:
    """BMP, TIFF, SVG and non-images are not even probed."""
    assert _rejected_reason(lambda: _thumb(data)) == "unsupported_format"


@pytest.mark.parametrize("value", ["not base64!", "QUJDR", "QQ", "\u00e9\u00e9\u00e9\u00e9"])
def test_invalid_base64_is_refused(value: str) -> None:
    """Malformed base64 fails validation without echoing the input."""
    with pytest.raises(ValidationError) as info:
        Thumbnail(image_base64=value)
    assert "invalid_base64" in str(info.value)
    assert value not in str(info.value)


def test_base64_with_line_breaks_is_accepted() -> None:
    """Base64 wrapped at 76 columns (as `base64` prints it) is fine."""
    data = _encode(Image.new("RGB", (10, 10)), "PNG")
    wrapped = base64.encodebytes(data).decode("ascii")
    assert "\n" in wrapped
    assert make_thumbnail(Thumbnail(image_base64=wrapped))["width"] == 10


def test_empty_image_is_refused() -> None:
    """An empty base64 string is refused."""
    with pytest.raises(ValidationError, match="empty_image"):
        Thumbnail(image_base64="")


def test_oversize_upload_is_refused() -> None:
    """More than 8 MiB once decoded is refused at validation."""
    with pytest.raises(ValidationError, match="too_large"):
        Thumbnail(image_base64=_b64(b"\0" * (MAX_INPUT_BYTES + 1)))


def test_upload_of_exactly_the_cap_passes_validation() -> None:
    """The byte cap is inclusive."""
    assert Thumbnail(image_base64=_b64(b"\0" * MAX_INPUT_BYTES)).image_base64


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"image_base64": "QUJD", "url": f"https://{HOST}/a.png"},
        {"image_base64": None, "url": None},
    ],
)
def test_exactly_one_source_is_required(values: dict[str, Any]) -> None:
    """Neither or both of image_base64 and url are refused."""
    with pytest.raises(ValidationError, match="one_source"):
        Thumbnail.model_validate(values)


@pytest.mark.parametrize(
    "values",
    [
        {"max_width": 0},
        {"max_width": 1025},
        {"max_height": 0},
        {"max_height": 2000},
        {"max_width": "64"},
        {"max_width": True},
        {"format": "gif"},
        {"format": "bmp"},
        {"extra": 1},
        {"url": "http://images.test/a.png"},
        {"url": "https://127.0.0.1/a.png"},
        {"url": "https://user:pw@images.test/a.png"},
    ],
)
def test_bad_options_are_refused(values: dict[str, Any]) -> None:
    """Sizes 1..1024 (integers), png/jpeg/webp only, https public URLs, no extra fields."""
    payload = {"image_base64": "QUJD", **values}
    if "url" in values:
        payload.pop("image_base64")
    with pytest.raises(ValidationError):
        Thumbnail.model_validate(payload)


def test_refusals_are_not_retried() -> None:
    """InputRejectedError is outside the retry policy; network failures are inside."""
    assert SPEC is not None
    assert not isinstance(InputRejectedError("x"), SPEC.retry.retry_on)
    assert isinstance(UpstreamUnavailableError("x"), SPEC.retry.retry_on)
    assert isinstance(TimeoutError(), SPEC.retry.retry_on)
