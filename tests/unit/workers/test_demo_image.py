"""Tests for ``image.thumbnail``: real small images, crafted bombs, and URL fetches.

URLs are fetched from a local HTTPS server whose certificate comes from
``certs.material.init_certs``; host names are answered by a fake resolver, and 127.0.0.1
is reachable only where a test passes ``allow=LOOPBACK`` to the fetcher.
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from typing import Any

import pytest
from PIL import Image, ImageFile
from PIL.PngImagePlugin import PngInfo
from pydantic import ValidationError

from certs.material import CertPaths, init_certs
from security.errors import InputRejectedError, UnsafeURLError
from security.tls import server_context
from workers.contract.catalogue import default_catalogue
from workers.demo.image import (
    MAX_INPUT_BYTES,
    MAX_PIXELS,
    Thumbnail,
    UpstreamUnavailableError,
    make_thumbnail,
    thumbnail,
)
from workers.safe_fetch import fetch

LOOPBACK = [ip_network("127.0.0.0/8")]
HOST = "images.test"  # only the fake resolver knows it; the https leaf carries it as a SAN
SPEC = default_catalogue.get("image.thumbnail")


# --- image helpers ----------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


def _open_result(result: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(result["image_base64"])))
    image.load()
    return image


def _rotated_jpeg() -> bytes:
    """400x200 stored, EXIF orientation 6 (display rotated 90 degrees), plus GPS and a maker."""
    image = Image.new("RGB", (400, 200), "red")
    image.paste(Image.new("RGB", (40, 200), "blue"), (0, 0))  # marks the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "CanaryCam"  # Make
    exif[0x8825] = {1: "N", 2: (46.0, 12.0, 0.0)}  # GPSInfo
    return _encode(image, "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128)


def _thumb(data: bytes, **options: Any) -> dict[str, Any]:
    return make_thumbnail(Thumbnail(image_base64=_b64(data), **options))


def _rejected_reason(call: Callable[[], object]) -> str:
    with pytest.raises(InputRejectedError) as info:
        call()
    return info.value.reason


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


# --- URLs -------------------------------------------------------------------------------

PNG_BODY = _encode(Image.new("RGB", (512, 256), "purple"), "PNG")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/ok.png":
            self._reply(200, PNG_BODY, "image/png")
        elif self.path == "/huge.png":  # declares more than the cap; refused on the header
            self.send_response(200)
            self.send_header("Content-Length", str(MAX_INPUT_BYTES + 1))
            self.end_headers()
        elif self.path == "/busy.png":
            self._reply(503, b"busy", "text/plain")
        elif self.path == "/slow-down.png":
            self._reply(429, b"slow down", "text/plain")
        else:
            self._reply(404, b"nope", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    paths: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (as the byte cap does) is expected here."""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    folder = tmp_path_factory.mktemp("image") / "certs"
    init_certs(folder, names=[HOST])
    return CertPaths(folder)


@pytest.fixture(scope="module")
def https_server(certs: CertPaths) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.paths = []
    server.socket = server_context(certs.cert("https"), certs.key("https")).wrap_socket(
        server.socket, server_side=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def paths(https_server: _Server) -> list[str]:
    https_server.paths.clear()
    return https_server.paths


@pytest.fixture
def base_url(https_server: _Server) -> str:
    return f"https://{HOST}:{https_server.server_address[1]}"


def _dns(table: dict[str, str]) -> Callable[..., list[tuple[Any, ...]]]:
    def resolve(host: str, port: int, *_args: object) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return resolve


def _fetcher(certs: CertPaths, *, allow: bool = True) -> Callable[..., Any]:
    return functools.partial(
        fetch,
        allow=LOOPBACK if allow else (),
        resolver=_dns({HOST: "127.0.0.1"}),
        verify=str(certs.ca),
    )


def test_url_is_fetched_and_thumbnailed(base_url: str, certs: CertPaths, paths: list[str]) -> None:
    """An allowed HTTPS URL is fetched through safe_fetch and thumbnailed."""
    payload = Thumbnail(url=f"{base_url}/ok.png", max_width=64, format="webp")
    result = make_thumbnail(payload, fetcher=_fetcher(certs))
    assert (result["width"], result["height"]) == (64, 32)
    assert (result["original_width"], result["original_height"]) == (512, 256)
    assert _open_result(result).format == "WEBP"
    assert paths == ["/ok.png"]


def test_url_resolving_to_loopback_is_refused(
    base_url: str, certs: CertPaths, paths: list[str]
) -> None:
    """Without an explicit allow, a name resolving to 127.0.0.1 is refused; nothing is sent."""
    payload = Thumbnail(url=f"{base_url}/ok.png")
    with pytest.raises(UnsafeURLError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs, allow=False))
    assert info.value.reason == "non_public_address"
    assert paths == []


def test_url_with_oversize_body_is_refused(base_url: str, certs: CertPaths) -> None:
    """A body larger than 8 MiB is refused by the fetcher's byte cap."""
    payload = Thumbnail(url=f"{base_url}/huge.png")
    assert _rejected_reason(lambda: make_thumbnail(payload, fetcher=_fetcher(certs))) == (
        "too_large"
    )


def test_url_not_found_is_a_final_refusal_without_the_url(base_url: str, certs: CertPaths) -> None:
    """A 4xx answer is refused (not retried) and the error does not quote the URL."""
    payload = Thumbnail(url=f"{base_url}/missing.png")
    with pytest.raises(InputRejectedError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs))
    assert info.value.reason == "fetch_refused"
    assert info.value.field == "url"
    assert "404" in str(info.value)
    assert HOST not in str(info.value)
    assert info.value.__suppress_context__


@pytest.mark.parametrize("path", ["/busy.png", "/slow-down.png"])
def test_url_server_errors_are_retried(base_url: str, certs: CertPaths, path: str) -> None:
    """5xx and 429 answers raise a retryable error that does not quote the URL."""
    assert SPEC is not None
    payload = Thumbnail(url=f"{base_url}{path}")
    with pytest.raises(UpstreamUnavailableError) as info:
        make_thumbnail(payload, fetcher=_fetcher(certs))
    assert isinstance(info.value, SPEC.retry.retry_on)
    assert HOST not in str(info.value)


def test_url_pointing_at_a_non_image_is_refused(
    base_url: str, certs: CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched bytes go through the same format allow-list."""
    monkeypatch.setattr(f"{__name__}.PNG_BODY", b"<html>not an image</html>")
    payload = Thumbnail(url=f"{base_url}/ok.png")
    assert _rejected_reason(lambda: make_thumbnail(payload, fetcher=_fetcher(certs))) == (
        "unsupported_format"
    )


def test_task_is_declared_once() -> None:
    """image.thumbnail registers once, on import, with this schema and function."""
    importlib.import_module("workers.demo.image")
    importlib.import_module("workers.demo.image")
    assert SPEC is not None
    assert default_catalogue.get("image.thumbnail") is SPEC
    assert SPEC.fn is thumbnail
    assert SPEC.schema is Thumbnail
    assert SPEC.max_payload_bytes > 4 * (MAX_INPUT_BYTES // 3)
