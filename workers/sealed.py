"""The only serializers a worker accepts: sealed task bodies and sealed results.

Design (the issue left the choice to us): a kombu serializer with its own content
type, the single entry of ``accept_content`` (tasks) and ``result_accept_content``
(results). Anything else on the queue - JSON, pickle, an unsigned envelope - is
refused by kombu before any task code is looked at.

* Task bodies (``application/x-taskgate-sealed``) are sealed *and signed* by the
  gateway (``security.sealing``). The decoder in the worker's main process does no
  cryptography: it hands the call on as a :class:`SealedCall` (the envelope, unopened),
  and the pool process that runs the task opens it before anything else, refusing what
  fails: :func:`unseal_call` decrypts it (its AEAD tag authenticates it under a broker
  key), the task base class checks the envelope's binding (:class:`SealedOrigin`)
  against the message's own task id and name (the serializer alone never sees the
  headers), sends the start gate, and checks the signature (:meth:`UnverifiedCall.verify`)
  while Redis runs the gate - before any secret is decrypted or any task code runs
  (``workers.execution.task``). :func:`open_call` does it all at once, signature first.
  Why the pool: Celery's main process is one thread that receives, hands out and
  settles every message of the worker; a signature check there is on every task's path,
  while the pool processes run side by side.
* A retry re-publishes the original envelope byte for byte: workers hold no signing
  key, so they cannot originate work, only send the gateway's message back.
* Results and failure details (``application/x-taskgate-sealed-result``) are sealed
  with the broker key, bound to the task id; unsigned (workers hold no signing key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kombu.serialization import register
from kombu.utils.json import dumps as kombu_dumps

from security.errors import NotSealedError, SealError
from security.keystore import KeyRing
from security.sealing import PREFIX, Opened, Unverified, open_envelope, open_unverified, seal
from workers.contract.wire import (
    RESULT_BINDING,
    RESULT_CONTENT_TYPE,
    TASK_CONTENT_TYPE,
    replay_bucket,
    replay_field,
)

__all__ = [
    "RESULT_BINDING",
    "RESULT_CONTENT_TYPE",
    "RESULT_SERIALIZER",
    "SEAL_KWARG",
    "TASK_CONTENT_TYPE",
    "TASK_SERIALIZER",
    "SealedCall",
    "SealedOrigin",
    "UnverifiedCall",
    "open_call",
    "register_serializers",
    "unseal_call",
]

TASK_SERIALIZER = "taskgate-sealed"
RESULT_SERIALIZER = "taskgate-sealed-result"
SEAL_KWARG = "__taskgate_seal__"


@dataclass(frozen=True)
class SealedOrigin:
    """Proof that a call came out of a gateway envelope, and for which task."""

    task_id: str
    task_name: str
    expires_at: float
    envelope: bytes = field(repr=False)
    issued_at: float = 0.0  # the seal's signed issue time: with the id, names its marker

    @property
    def marker(self) -> tuple[str, str]:
        """This seal's final marker: (bucket key, field) - ``workers.contract.wire``."""
        return replay_bucket(self.expires_at), replay_field(self.task_id, self.issued_at)


@dataclass(frozen=True)
class SealedCall:
    """A sealed task body as the main process hands it to the pool: not opened yet.

    It only says the message had the sealed content type and an envelope's prefix;
    nothing in it is trusted until it is decrypted and its signature verified.
    """

    envelope: bytes = field(repr=False)


def _decode_task(data: bytes | str) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The main process's decoder: the envelope, passed on unopened (see the module doc).

    A body without an envelope's prefix is refused here already (``not_sealed``).
    """
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    if not raw.startswith(PREFIX):
        raise NotSealedError("not a sealed envelope", reason="not_sealed")
    return [], {SEAL_KWARG: SealedCall(raw)}, {}


def open_call(keys: KeyRing, call: SealedCall) -> tuple[list[Any], dict[str, Any]]:
    """Verify the signature, decrypt and parse a sealed task call: its args and kwargs,
    the kwargs carrying the :class:`SealedOrigin` under :data:`SEAL_KWARG`. Raises
    :class:`SealError` (or a subclass) for anything that is not a gateway's task call."""
    raw = call.envelope
    opened = open_envelope(raw, keys=keys.broker, verifiers=keys.signing, require_signature=True)
    return _parse_call(opened, raw)


@dataclass(frozen=True)
class UnverifiedCall:
    """A sealed task call authenticated by its AEAD tag under a broker key and decrypted,
    whose gateway signature is still to be checked (:func:`unseal_call`).

    Only a holder of a broker key - the gateway, or a worker, which also holds a Redis
    client certificate - can have made it. Until :meth:`verify` returns, its task id and
    payload may steer the start gate (bookkeeping such a holder could write to Redis itself)
    and nothing else: no secret is decrypted and no task code runs.
    """

    args: list[Any] = field(repr=False)
    kwargs: dict[str, Any] = field(repr=False)
    _envelope: Unverified = field(repr=False)

    def verify(self) -> None:
        """Check the gateway's signature; raises :class:`SealError` (``bad_signature``)."""
        self._envelope.verify()


def unseal_call(keys: KeyRing, call: SealedCall) -> UnverifiedCall:
    """:func:`open_call` but for the signature's arithmetic, left to
    :meth:`UnverifiedCall.verify`: the worker sends its start gate in between, so that
    Redis runs it while the signature is checked (``workers.execution.task``). Refuses what
    :func:`open_call` refuses, a tampered envelope by its AEAD tag (``bad_ciphertext``)."""
    raw = call.envelope
    pending = open_unverified(raw, keys=keys.broker, verifiers=keys.signing, require_signature=True)
    args, kwargs = _parse_call(pending, raw)
    return UnverifiedCall(args, kwargs, pending)


def _parse_call(source: Opened | Unverified, raw: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        args, kwargs, _embed = json.loads(source.plaintext)
    except (ValueError, TypeError) as exc:
        raise SealError("sealed body is not a task call", reason="bad_body") from exc
    if not isinstance(args, list) or not isinstance(kwargs, dict) or SEAL_KWARG in kwargs:
        raise SealError("sealed body is not a task call", reason="bad_body")
    kwargs[SEAL_KWARG] = SealedOrigin(
        task_id=source.task_id,
        task_name=source.task_name,
        expires_at=source.exp,
        envelope=raw,
        issued_at=source.iat,
    )
    return args, kwargs


def _encode_task(body: Any) -> bytes:
    """Only a retry may publish from a worker, and only the original envelope."""
    try:
        _args, kwargs, _embed = body
        origin = kwargs[SEAL_KWARG]
    except (TypeError, ValueError, KeyError):
        origin = None
    if not isinstance(origin, (SealedOrigin, SealedCall)):
        raise NotSealedError("workers cannot originate tasks; only the gateway seals and signs")
    return origin.envelope


def _encode_result(keys: KeyRing, ttl: float, meta: Any) -> bytes:
    if not isinstance(meta, dict) or not isinstance(meta.get("task_id"), str):
        raise SealError("result metadata without a task id", reason="bad_result")
    plaintext = kombu_dumps(meta).encode()
    return seal(
        plaintext,
        task_id=meta["task_id"],
        task_name=RESULT_BINDING,
        keys=keys.broker,
        signer=None,
        ttl=ttl,
    )


def _decode_result(keys: KeyRing, data: bytes | str) -> dict[str, Any]:
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    opened = open_envelope(raw, keys=keys.broker, verifiers=None, require_signature=False)
    meta = json.loads(opened.plaintext)
    if not isinstance(meta, dict):
        raise SealError("result is not an object", reason="bad_result")
    opened.check_binding(str(meta.get("task_id")), RESULT_BINDING)
    return meta


def register_serializers(keys: KeyRing, *, result_ttl: float) -> None:
    """Register both serializers with kombu for this process (idempotent)."""
    # kombu's stubs say encoders return str; with content_encoding="binary" bytes pass through.
    register(
        TASK_SERIALIZER,
        _encode_task,  # type: ignore[arg-type]
        _decode_task,
        content_type=TASK_CONTENT_TYPE,
        content_encoding="binary",
    )
    register(
        RESULT_SERIALIZER,
        lambda meta: _encode_result(keys, result_ttl, meta),  # type: ignore[arg-type,return-value]
        lambda data: _decode_result(keys, data),
        content_type=RESULT_CONTENT_TYPE,
        content_encoding="binary",
    )
