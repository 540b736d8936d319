"""Tests for ``image.thumbnail`` on real small images.

Boxes and aspect ratios, every input and output format, EXIF orientation applied and
metadata stripped, transparency and colour modes, and the task's catalogue entry.
"""

from __future__ import annotations

import base64
import importlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.support.images import SPEC
from tests.support.images import b64 as _b64
from tests.support.images import encode_image as _encode
from tests.support.images import open_result as _open_result
from tests.support.images import thumb as _thumb
from workers.contract.catalogue import default_catalogue
from workers.demo.image import MAX_INPUT_BYTES, Thumbnail, thumbnail


def _rotated_jpeg() -> bytes:
    """400x200 stored, EXIF orientation 6 (display rotated 90 degrees), plus GPS and a maker."""
    image = Image.new("RGB", (400, 200), "red")
    image.paste(Image.new("RGB", (40, 200), "blue"), (0, 0))  # marks the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "CanaryCam"  # Make
    exif[0x8825] = {1: "N", 2: (46.0, 12.0, 0.0)}  # GPSInfo
    return _encode(image, "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128)


# --- thumbnails of real images ----------------------------------------------------------


def test_png_thumbnail_fits_the_box_and_keeps_aspect() -> None:
    """A 600x300 PNG becomes 256x128 PNG; the original size is reported."""
    result = _thumb(_encode(Image.new("RGB", (600, 300), "green"), "PNG"))
    assert {k: v for k, v in result.items() if k != "image_base64"} == {
        "format": "png",
        "width": 256,
        "height": 128,
        "original_width": 600,
        "original_height": 300,
    }
    image = _open_result(result)
    assert (image.format, image.size) == ("PNG", (256, 128))


def test_jpeg_thumbnail_honours_box_and_output_format() -> None:
    """A JPEG is scaled into a non-square box and written in the requested format."""
    data = _encode(Image.new("RGB", (1000, 500), "yellow"), "JPEG")
    result = _thumb(data, max_width=100, max_height=100, format="jpeg")
    image = _open_result(result)
    assert (image.format, image.size) == ("JPEG", (100, 50))


@pytest.mark.parametrize(("fmt", "pillow"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_every_output_format(fmt: str, pillow: str) -> None:
    """png, jpeg and webp outputs are what they claim to be."""
    result = _thumb(_encode(Image.new("RGB", (50, 40), "white"), "PNG"), format=fmt)
    assert result["format"] == fmt
    assert _open_result(result).format == pillow


@pytest.mark.parametrize("source", ["GIF", "WEBP"])
def test_gif_and_webp_inputs_are_accepted(source: str) -> None:
    """GIF and WebP inputs are on the allow-list."""
    result = _thumb(_encode(Image.new("RGB", (300, 300), "blue"), source), max_width=30)
    assert (result["width"], result["height"]) == (30, 30)


def test_small_images_are_not_upscaled() -> None:
    """An image already inside the box keeps its size."""
    result = _thumb(_encode(Image.new("RGB", (20, 10)), "PNG"))
    assert (result["width"], result["height"]) == (20, 10)


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    """The thumbnail is upright; EXIF (GPS, maker), ICC profile and text are gone."""
    for fmt in ("jpeg", "png", "webp"):
        result = _thumb(_rotated_jpeg(), format=fmt)
        assert (result["original_width"], result["original_height"]) == (200, 400)
        assert (result["width"], result["height"]) == (128, 256)
        image = _open_result(result)
        assert image.size == (128, 256)
        assert not image.getexif()
        assert "exif" not in image.info
        assert "icc_profile" not in image.info
        assert b"CanaryCam" not in base64.b64decode(result["image_base64"])
        # Orientation 6 puts the stored left edge (blue) on top.
        top = image.convert("RGB").getpixel((64, 2))
        assert isinstance(top, tuple)
        assert top[2] > 150
        assert top[0] < 100


def test_rotated_image_fits_a_non_square_box() -> None:
    """The box applies to the upright image, so width and height limits both hold."""
    result = _thumb(_rotated_jpeg(), max_width=100, max_height=50)
    assert result["width"] <= 100
    assert result["height"] <= 50
    assert (result["width"], result["height"]) == (25, 50)


def test_png_text_chunks_are_stripped() -> None:
    """PNG tEXt metadata does not survive."""
    info = PngInfo()
    info.add_text("Comment", "canary-comment")
    result = _thumb(_encode(Image.new("RGB", (10, 10)), "PNG", pnginfo=info))
    assert b"canary-comment" not in base64.b64decode(result["image_base64"])
    assert "Comment" not in _open_result(result).info


def test_transparency_is_kept_for_png_and_flattened_for_jpeg() -> None:
    """Alpha survives in PNG/WebP and becomes a white background in JPEG."""
    clear = _encode(Image.new("RGBA", (10, 10), (255, 0, 0, 0)), "PNG")
    assert _open_result(_thumb(clear)).mode == "RGBA"
    flat = _open_result(_thumb(clear, format="jpeg"))
    assert flat.mode == "RGB"
    pixel = flat.getpixel((5, 5))
    assert isinstance(pixel, tuple)
    assert min(pixel) > 240


def test_palette_gif_with_transparency_converts_cleanly() -> None:
    """A palette GIF with a transparent index becomes RGBA without warnings."""
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    data = _encode(image, "GIF", transparency=0)
    assert _open_result(_thumb(data)).mode == "RGBA"


def test_greyscale_input_is_converted() -> None:
    """Greyscale (L) input is written as RGB."""
    assert _open_result(_thumb(_encode(Image.new("L", (10, 10), 128), "PNG"))).mode == "RGB"


def test_task_function_runs_with_default_fetcher() -> None:
    """The registered task itself produces a thumbnail."""
    data = _encode(Image.new("RGB", (30, 30)), "PNG")
    assert thumbnail(Thumbnail(image_base64=_b64(data)))["width"] == 30


def test_task_is_declared_once() -> None:
    """image.thumbnail registers once, on import, with this schema and function."""
    importlib.import_module("workers.demo.image")
    importlib.import_module("workers.demo.image")
    assert SPEC is not None
    assert default_catalogue.get("image.thumbnail") is SPEC
    assert SPEC.fn is thumbnail
    assert SPEC.schema is Thumbnail
    assert SPEC.max_payload_bytes > 4 * (MAX_INPUT_BYTES // 3)
