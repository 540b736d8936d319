"""Images for the ``image.thumbnail`` tests: encoded, thumbnailed and refused.

The task's catalogue entry, the host name its URL tests fetch from, encoding an image,
running the thumbnailer on bytes, opening its result, and the reason it refused.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from security.errors import InputRejectedError
from workers.contract.catalogue import default_catalogue
from workers.demo.image import Thumbnail, make_thumbnail

HOST = "images.test"  # only the fake resolver knows it; the https leaf carries it as a SAN
SPEC = default_catalogue.get("image.thumbnail")


def encode_image(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """``image`` saved as ``fmt`` with ``options``, as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``, as the task's payload carries it."""
    return base64.b64encode(data).decode("ascii")


def open_result(result: dict[str, Any]) -> Image.Image:
    """The thumbnail in the task's result, decoded."""
    image = Image.open(io.BytesIO(base64.b64decode(result["image_base64"])))
    image.load()
    return image


def thumb(data: bytes, **options: Any) -> dict[str, Any]:
    """Thumbnail ``data`` with ``options`` as the task does."""
    return make_thumbnail(Thumbnail(image_base64=b64(data), **options))


def rejected_reason(call: Callable[[], object]) -> str:
    """The reason of the ``InputRejectedError`` that ``call`` raises."""
    with pytest.raises(InputRejectedError) as info:
        call()
    return info.value.reason
