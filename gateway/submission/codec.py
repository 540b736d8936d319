"""How the gateway encodes task bodies and decodes results for the workers' wire format."""

from __future__ import annotations

import json
from typing import Any, Protocol

from security.keystore import KeyRing
from security.sealing import open_envelope, seal
from workers.contract.wire import RESULT_BINDING, TASK_CONTENT_TYPE

__all__ = ["BodyCodec", "JsonCodec", "SealedCodec"]

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
    """Plain JSON (Celery's own format): the worker benchmark's unsealed baseline."""

    content_type = "application/json"

    # The ids go unused: plain JSON binds nothing (the sealed codec binds both).
    def encode(self, task_id: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:  # noqa: ARG002
        return json.dumps([args, kwargs, _EMBED], separators=(",", ":")).encode()

    def decode_result(self, task_id: str, raw: bytes) -> dict[str, Any]:  # noqa: ARG002
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("result document is not an object")
        return doc


class SealedCodec:
    """Task bodies sealed (AES-256-GCM) and signed (Ed25519) by the gateway.

    The envelope is bound to the task id and name and expires after ``ttl`` seconds,
    which must cover queueing plus every retry. Results come back sealed by a worker
    (unsigned: workers hold no signing key) and bound to the task id.
    """

    content_type = TASK_CONTENT_TYPE

    def __init__(self, keys: KeyRing, *, ttl: float) -> None:
        self._keys = keys
        self._signer = keys.signing.current()
        self._ttl = ttl

    @property
    def ttl(self) -> float:
        """Seconds from a seal's issue time (``now``) to its expiry (``now + ttl``)."""
        return self._ttl

    def encode(
        self,
        task_id: str,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        now: float | None = None,
    ) -> bytes:
        plaintext = json.dumps([args, kwargs, _EMBED], separators=(",", ":")).encode()
        return self.reseal(task_id, name, plaintext, now=now)

    def reseal(
        self, task_id: str, name: str, plaintext: bytes, *, now: float | None = None
    ) -> bytes:
        """Seal an encoded body: bound to the task, signed, expiring (also a requeue's
        reseal). Issued at ``now`` (default: the clock), expiring at ``now + ttl``."""
        return seal(
            plaintext,
            task_id=task_id,
            task_name=name,
            keys=self._keys.broker,
            signer=self._signer,
            ttl=self._ttl,
            now=now,
        )

    def decode_result(self, task_id: str, raw: bytes) -> dict[str, Any]:
        opened = open_envelope(raw, keys=self._keys.broker, verifiers=None, require_signature=False)
        opened.check_binding(task_id, RESULT_BINDING)
        doc = json.loads(opened.plaintext)
        if not isinstance(doc, dict):
            raise ValueError("result document is not an object")
        return doc
