"""How the gateway encodes task bodies and decodes results for the workers' wire format."""

from __future__ import annotations

import json
from typing import Any, Protocol

__all__ = ["BodyCodec", "JsonCodec"]

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class BodyCodec(Protocol):
    """Encodes a task call for the broker and decodes what the result backend holds."""

    content_type: str

    def encode(self, task_id: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:
        """The message body for Celery protocol 2: ``[args, kwargs, embed]``."""
        ...

    def decode_result(self, task_id: str, raw: bytes) -> dict[str, Any]:
        """The result-backend document for ``task_id``."""
        ...


class JsonCodec:
    """Plain JSON (Celery's own format), used before sealing is configured."""

    content_type = "application/json"

    # The ids go unused: plain JSON binds nothing (the sealed codec binds both).
    def encode(self, task_id: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:  # noqa: ARG002
        return json.dumps([args, kwargs, _EMBED], separators=(",", ":")).encode()

    def decode_result(self, task_id: str, raw: bytes) -> dict[str, Any]:  # noqa: ARG002
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("result document is not an object")
        return doc
