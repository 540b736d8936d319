"""``image.thumbnail``: a bounded thumbnail of an uploaded or fetched image.

Untrusted images are a classic way to exhaust a worker, so the limits come before the work:

* at most 8 MiB of input, whether base64 in the payload or fetched through the SSRF-safe
  :func:`workers.safe_fetch.fetch` (which caps the body while streaming);
* only PNG, JPEG, GIF and WebP are even probed (``Image.open(formats=...)``);
* the pixel count is checked from the header, before any pixel is decoded: Pillow's own
  bomb check runs inside ``Image.open`` against a limit set on every call (its warning
  band is turned into a refusal), and the size is checked again explicitly;
* truncated images are refused (``LOAD_TRUNCATED_IMAGES`` is forced off per call).

The output is re-encoded from a fresh image, so EXIF (including GPS), ICC profiles, text
chunks and comments are all dropped; the EXIF orientation is applied first so the
thumbnail stays upright. Refusals are :class:`~security.errors.InputRejectedError`.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from typing import Annotated, Any, Literal

import httpx
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from security.errors import InputRejectedError
from security.sanitise import SafeHttpsUrl
from workers.contract.catalogue import RetryPolicy, task
from workers.safe_fetch import FetchResult, fetch

__all__ = [
    "INPUT_FORMATS",
    "MAX_INPUT_BYTES",
    "MAX_PIXELS",
    "Fetcher",
    "Thumbnail",
    "UpstreamUnavailableError",
    "make_thumbnail",
    "thumbnail",
]

MAX_INPUT_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000
INPUT_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
# Base64 of 8 MiB is ~11.2 M characters; leave room for line breaks.
_MAX_BASE64_CHARS = 12 * 1024 * 1024
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "png": {"format": "PNG"},
    "jpeg": {"format": "JPEG", "quality": 85},
    "webp": {"format": "WEBP", "quality": 80},
}

Fetcher = Callable[..., FetchResult]
Side = Annotated[int, Field(ge=1, le=1024, strict=True)]
Base64Image = Annotated[str, StringConstraints(strict=True, max_length=_MAX_BASE64_CHARS)]


def _decode_base64(value: str) -> bytes:
    # Line breaks (as `base64` writes them) are fine; any other stray character is not.
    return base64.b64decode("".join(value.split()), validate=True)


class Thumbnail(BaseModel):
    """Payload of ``image.thumbnail``: exactly one of ``image_base64`` or ``url``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    image_base64: Base64Image | None = None
    url: SafeHttpsUrl | None = None
    max_width: Side = 256
    max_height: Side = 256
    format: Literal["png", "jpeg", "webp"] = "png"

    @field_validator("image_base64")
    @classmethod
    def _valid_base64(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            decoded = _decode_base64(value)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("invalid_base64", "Value is not valid base64") from None
        if not decoded:
            raise PydanticCustomError("empty_image", "The image is empty")
        if len(decoded) > MAX_INPUT_BYTES:
            raise PydanticCustomError(
                "too_large", "The image is larger than {limit} bytes", {"limit": MAX_INPUT_BYTES}
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Thumbnail:
        if (self.image_base64 is None) == (self.url is None):
            raise PydanticCustomError("one_source", "Give exactly one of image_base64 or url")
        return self


class UpstreamUnavailableError(ConnectionError):
    """The image server answered 5xx or 429: worth retrying later."""


def _rejected(message: str, reason: str, field: str = "") -> InputRejectedError:
    return InputRejectedError(message, field=field, reason=reason)


def _source_bytes(payload: Thumbnail, fetcher: Fetcher) -> bytes:
    if payload.image_base64 is not None:
        return _decode_base64(payload.image_base64)
    if payload.url is None:  # pragma: no cover - the schema requires one source
        raise _rejected("no image given", "no_image")
    try:
        return fetcher(payload.url, max_bytes=MAX_INPUT_BYTES).content
    except httpx.HTTPStatusError as exc:
        # httpx's message quotes the URL: keep the status code only.
        status = exc.response.status_code
        if status >= 500 or status == 429:
            raise UpstreamUnavailableError(f"image server answered HTTP {status}") from None
        raise _rejected(f"image URL answered HTTP {status}", "fetch_refused", "url") from None


def _fresh_copy(image: Image.Image, output: str) -> Image.Image:
    """Pixels only, in a mode the output format takes: no info, EXIF, ICC or text."""
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if output == "jpeg":
        flat = Image.new("RGB", image.size, "white")
        if has_alpha:
            rgba = image.convert("RGBA")
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat.paste(image.convert("RGB"))
        return flat
    mode = "RGBA" if has_alpha else "RGB"
    fresh = Image.new(mode, image.size)
    fresh.paste(image.convert(mode))
    return fresh


def _render(data: bytes, box: tuple[int, int], output: str) -> dict[str, Any]:
    with Image.open(io.BytesIO(data), formats=INPUT_FORMATS) as image:
        width, height = image.size  # from the header; nothing decoded yet
        # Pillow's check inside Image.open fires first; this one holds even if another
        # thread changed Image.MAX_IMAGE_PIXELS between make_thumbnail and Image.open.
        if width * height > MAX_PIXELS:  # pragma: no cover - see above
            raise _rejected("the image has too many pixels", "too_many_pixels")
        quarter_turn = image.getexif().get(ExifTags.Base.Orientation, 1) in _QUARTER_TURNS
        original = (height, width) if quarter_turn else (width, height)
        image.thumbnail((box[1], box[0]) if quarter_turn else box)
        clean = _fresh_copy(ImageOps.exif_transpose(image), output)
    encoded = io.BytesIO()
    clean.save(encoded, **_SAVE_OPTIONS[output])
    return {
        "format": output,
        "width": clean.width,
        "height": clean.height,
        "original_width": original[0],
        "original_height": original[1],
        "image_base64": base64.b64encode(encoded.getvalue()).decode("ascii"),
    }


def make_thumbnail(payload: Thumbnail, *, fetcher: Fetcher = fetch) -> dict[str, Any]:
    """The thumbnail of ``payload``'s image; ``fetcher`` is ``fetch``-compatible (tests)."""
    data = _source_bytes(payload, fetcher)
    # Module globals, set on every call so nothing else in the process can loosen them.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _render(data, (payload.max_width, payload.max_height), payload.format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _rejected("the image has too many pixels", "too_many_pixels") from None
    except UnidentifiedImageError:
        raise _rejected("not a PNG, JPEG, GIF or WebP image", "unsupported_format") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        # Truncated or corrupt data: Pillow's messages may quote bytes of the input.
        raise _rejected("the image data is corrupt or truncated", "invalid_image") from None


@task(
    "image.thumbnail",
    schema=Thumbnail,
    rate_limit="30/minute",
    max_payload_bytes=_MAX_BASE64_CHARS + 64 * 1024,
    retry=RetryPolicy(
        max_attempts=3, retry_on=(httpx.TransportError, ConnectionError, TimeoutError)
    ),
    soft_time_limit=60,
    time_limit=90,
)
def thumbnail(payload: Thumbnail) -> dict[str, Any]:
    """Make a thumbnail (PNG, JPEG or WebP) of an uploaded or fetched image, metadata removed."""
    return make_thumbnail(payload)
