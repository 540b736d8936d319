"""Secret references: secret fields leave the payload before it is sealed and enqueued.

The gateway calls :func:`swap_secrets` (pure, no I/O): every declared secret field is
replaced by ``{"$secret": "<ref id>"}`` and its value is sealed into a :class:`VaultEntry`;
:func:`write_entries` queues the ``SET ... EX`` commands on the caller's pipeline so the
whole submission is one round trip. The worker calls :func:`resolve_secrets` just in time
(one ``MGET``) and gets :class:`pydantic.SecretStr` values; :func:`delete_secrets` removes
the stored values once the task is finished for good.

Blob layout, version 1 (everything but the ciphertext is AES-GCM associated data, so the
blob is bound to its key id, task id and reference id)::

    0x01 | len kid | kid | len task_id | task_id | len ref_id | ref_id | nonce(12) | ct+tag
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from security.errors import ConfigError, InputRejectedError, KeyRingError, VaultError
from security.field_paths import field_targets, join_path, split_path
from security.keys import KeySet, Purpose, SymmetricKey

__all__ = [
    "REF_KEY",
    "VAULT_PREFIX",
    "SupportsSet",
    "SwapResult",
    "VaultEntry",
    "delete_secrets",
    "reference_ids",
    "resolve_secrets",
    "swap_secrets",
    "unwrap",
    "vault_key",
    "write_entries",
]

VAULT_PREFIX = "tg:vault:"  # one key per sealed secret: <prefix><task id>:<ref id>
REF_KEY = "$secret"  # the one key of a reference mapping
MAX_DEPTH = 64  # payloads are depth-limited upstream; this only stops runaway recursion

_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_AAD_DOMAIN = b"taskgate/vault/v1\x00"  # keeps vault AAD distinct from any other use of AES-GCM
_REF_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
_TASK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # UUIDs and urlsafe ids; no ':' in keys


@dataclass(frozen=True)
class VaultEntry:
    """One sealed value to store: ``SET redis_key blob EX ttl``."""

    redis_key: str
    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class SwapResult:
    """A new payload holding references, and the sealed values the references point to."""

    payload: dict[str, Any] = field(repr=False)
    entries: tuple[VaultEntry, ...]
    ref_ids: tuple[str, ...]


class SupportsSet(Protocol):
    """What :func:`write_entries` needs: a sync or asyncio redis pipeline both fit."""

    def set(self, name: str, value: bytes, *, ex: int) -> object: ...


def vault_key(task_id: str, ref_id: str) -> str:
    """The Redis key that holds ``ref_id`` of task ``task_id``."""
    _check_task_id(task_id)
    _check_ref_id(ref_id, "")
    return f"{VAULT_PREFIX}{task_id}:{ref_id}"


def swap_secrets(
    payload: Mapping[str, Any],
    secret_paths: Sequence[str],
    *,
    task_id: str,
    keys: KeySet[SymmetricKey],
) -> SwapResult:
    """Replace each present secret field with a reference; no I/O.

    ``secret_paths`` are dotted (``"smtp.password"``); ``*`` stands for every item of a
    list or every value of a mapping (``"headers.*.value"``). Missing or ``None`` fields are
    skipped. Raises :class:`InputRejectedError` (``.field`` set) for a secret that is not a
    string, a payload whose shape does not fit a path, or one that already holds a
    ``"$secret"`` key (a client must not smuggle in references).
    """
    _check_task_id(task_id)
    key = _vault_keys(keys).current()
    copy = _transform(payload, _refuse_reserved, "", 0, InputRejectedError)
    entries: list[VaultEntry] = []
    ref_ids: list[str] = []
    done: set[tuple[int, Any]] = set()
    for path in dict.fromkeys(secret_paths):
        for container, slot, where in field_targets(copy, split_path(path)):
            if (id(container), slot) in done:
                continue  # two patterns can name the same field; swap it once
            done.add((id(container), slot))
            value = container[slot]
            if value is None:
                continue
            if not isinstance(value, str):
                raise InputRejectedError(
                    f"secret field {where!r} must be a string",
                    field=where,
                    reason="secret_not_string",
                )
            try:
                plaintext = value.encode("utf-8")
            except UnicodeEncodeError:
                # `from None`: the codec error would quote characters of the value.
                raise InputRejectedError(
                    f"secret field {where!r} is not valid text",
                    field=where,
                    reason="secret_not_text",
                ) from None
            ref_id = secrets.token_urlsafe(16)
            entries.append(
                VaultEntry(vault_key(task_id, ref_id), _seal(key, task_id, ref_id, plaintext))
            )
            ref_ids.append(ref_id)
            container[slot] = {REF_KEY: ref_id}
    return SwapResult(payload=copy, entries=tuple(entries), ref_ids=tuple(ref_ids))


def write_entries(pipe: SupportsSet, entries: Iterable[VaultEntry], ttl_seconds: int) -> None:
    """Queue ``SET key blob EX ttl_seconds`` for every entry; the caller executes ``pipe``."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
        raise ConfigError(
            "ttl_seconds", "must be a positive whole number", "set the vault TTL in seconds"
        )
    for entry in entries:
        pipe.set(entry.redis_key, entry.blob, ex=ttl_seconds)


def reference_ids(payload: Any) -> list[str]:
    """Every reference id in ``payload``, in order, once each. Malformed ones raise."""
    found: dict[str, None] = {}

    def collect(ref_id: str, _where: str) -> object:
        found[ref_id] = None
        return ref_id

    _transform(payload, _reference(collect), "", 0, VaultError)
    return list(found)


def resolve_secrets(
    payload: Any,
    *,
    task_id: str,
    keys: KeySet[SymmetricKey],
    client: redis.Redis,
    blobs: Mapping[str, bytes | None] | None = None,
) -> Any:
    """A new payload with every reference replaced by the :class:`SecretStr` it points to.

    One ``MGET`` fetches every value (none if there is no reference), unless ``blobs``
    already holds them by vault key (a caller that fetched them in another round trip;
    a key absent from ``blobs`` counts as missing). ``client`` must not decode responses.
    Raises :class:`VaultError` with ``reason`` ``malformed_reference``,
    ``secret_unavailable`` (expired or deleted), ``binding_mismatch`` (stored for another
    task or reference), ``key_retired`` / ``unknown_kid``, ``tampered`` or ``malformed_blob``.
    Redis errors propagate unchanged so the caller can retry.
    """
    _check_task_id(task_id)
    vault_keys = _vault_keys(keys)
    where_of: dict[str, str] = {}

    def collect(ref_id: str, where: str) -> object:
        where_of.setdefault(ref_id, where)
        return ref_id

    _transform(payload, _reference(collect), "", 0, VaultError)
    ref_ids = list(where_of)
    wanted = [vault_key(task_id, r) for r in ref_ids]
    if blobs is not None:
        fetched: Any = [blobs.get(key) for key in wanted]
    else:
        fetched = client.mget(wanted) if ref_ids else []
    if not isinstance(fetched, list) or len(fetched) != len(ref_ids):
        raise VaultError("unexpected reply to MGET", reason="malformed_blob")
    values: dict[str, SecretStr] = {}
    for ref_id, blob in zip(ref_ids, fetched, strict=True):
        where = where_of[ref_id]
        if blob is None:
            raise VaultError(
                f"secret at {where!r} is unavailable (expired or deleted)",
                reason="secret_unavailable",
            )
        values[ref_id] = _open(vault_keys, blob, task_id=task_id, ref_id=ref_id, where=where)
    return _transform(payload, _reference(lambda r, _w: values[r]), "", 0, VaultError)


def delete_secrets(
    client: redis.Redis, task_id: str, refs: Iterable[str] | Mapping[str, Any]
) -> int:
    """Delete the stored values of ``refs`` (reference ids, or a payload holding them).

    Call once the task is finished for good. One ``DEL``; returns how many keys existed.
    """
    ref_ids = reference_ids(refs) if isinstance(refs, Mapping) else list(refs)
    keys = [vault_key(task_id, r) for r in dict.fromkeys(ref_ids)]
    if not keys:
        return 0
    return int(client.delete(*keys))


def unwrap(value: Any) -> Any:
    """A copy of ``value`` with every :class:`SecretStr` turned back into ``str``.

    Only for a task that must hand plain values to a library; prefer calling
    ``.get_secret_value()`` at the point of use.
    """
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    return value


# --- sealing ---------------------------------------------------------------------------


def _vault_keys(keys: KeySet[SymmetricKey]) -> KeySet[SymmetricKey]:
    if keys.purpose != Purpose.VAULT:
        raise KeyRingError(f"the vault needs vault keys, not {keys.purpose}", reason="purpose")
    return keys


def _header(kid: str, task_id: str, ref_id: str) -> bytes:
    parts = [p.encode("ascii") for p in (kid, task_id, ref_id)]
    if any(len(p) > 255 for p in parts):
        raise KeyRingError("key id too long for a vault blob", reason="bad_kid")
    out = bytearray([_VERSION])
    for p in parts:
        out.append(len(p))
        out += p
    return bytes(out)


def _seal(key: SymmetricKey, task_id: str, ref_id: str, plaintext: bytes) -> bytes:
    header = _header(key.kid, task_id, ref_id)
    nonce = os.urandom(_NONCE_BYTES)
    return header + nonce + AESGCM(key.secret).encrypt(nonce, plaintext, _AAD_DOMAIN + header)


def _parse(blob: bytes) -> tuple[bytes, list[str], bytes]:
    """Split a blob into (header, [kid, task_id, ref_id], nonce + ciphertext) or raise."""
    if not blob or blob[0] != _VERSION:
        raise VaultError("stored secret has an unknown format", reason="malformed_blob")
    fields: list[str] = []
    pos = 1
    for _ in range(3):
        if pos >= len(blob):
            raise VaultError("stored secret is truncated", reason="malformed_blob")
        end = pos + 1 + blob[pos]
        try:
            fields.append(blob[pos + 1 : end].decode("ascii"))
        except UnicodeDecodeError:
            raise VaultError("stored secret has a bad header", reason="malformed_blob") from None
        pos = end
    if len(blob) < pos + _NONCE_BYTES + _TAG_BYTES:
        raise VaultError("stored secret is truncated", reason="malformed_blob")
    return blob[:pos], fields, blob[pos:]


def _open(
    keys: KeySet[SymmetricKey], blob: object, *, task_id: str, ref_id: str, where: str
) -> SecretStr:
    if not isinstance(blob, bytes):
        raise VaultError("stored secret is not bytes (decode_responses?)", reason="malformed_blob")
    header, (kid, bound_task, bound_ref), body = _parse(blob)
    nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
    try:
        key = keys.get(kid)
    except KeyRingError as exc:
        raise VaultError(f"secret at {where!r}: {exc.message}", reason=exc.reason) from exc
    try:
        plaintext = AESGCM(key.secret).decrypt(nonce, ciphertext, _AAD_DOMAIN + header)
    except InvalidTag as exc:
        raise VaultError(f"secret at {where!r} failed authentication", reason="tampered") from exc
    # The header is authenticated, so it now truthfully says where the value was stored.
    if not (
        hmac.compare_digest(bound_task.encode(), task_id.encode())
        and hmac.compare_digest(bound_ref.encode(), ref_id.encode())
    ):
        raise VaultError(
            f"secret at {where!r} belongs to another task or reference", reason="binding_mismatch"
        )
    try:
        return SecretStr(plaintext.decode("utf-8"))
    except UnicodeDecodeError:
        # `from None`: the codec error would quote bytes of the value.
        raise VaultError(f"secret at {where!r} is not text", reason="malformed_blob") from None


# --- walking payloads ------------------------------------------------------------------

_OnRef = Callable[[Mapping[str, Any], str], object]


def _transform(
    node: Any, on_ref: _OnRef, where: str, depth: int, error: type[InputRejectedError | VaultError]
) -> Any:
    """Deep-copy JSON containers; a mapping holding ``"$secret"`` becomes ``on_ref(...)``."""
    if depth > MAX_DEPTH:
        raise error(f"payload nested deeper than {MAX_DEPTH} at {where!r}", reason="too_deep")
    if isinstance(node, Mapping):
        if REF_KEY in node:
            return on_ref(node, where)
        return {
            k: _transform(v, on_ref, join_path(where, k), depth + 1, error) for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return [
            _transform(v, on_ref, join_path(where, i), depth + 1, error) for i, v in enumerate(node)
        ]
    return node


def _refuse_reserved(_node: Mapping[str, Any], where: str) -> object:
    raise InputRejectedError(
        f"field {where or '<root>'!r} uses the reserved key {REF_KEY!r}",
        field=where,
        reason="reserved_key",
    )


def _reference(use: Callable[[str, str], object]) -> _OnRef:
    """An ``on_ref`` that accepts exactly ``{"$secret": "<ref id>"}`` and passes the id on."""

    def on_ref(node: Mapping[str, Any], where: str) -> object:
        ref_id = node[REF_KEY]
        if len(node) != 1 or not isinstance(ref_id, str):
            raise VaultError(
                f"malformed secret reference at {where!r}", reason="malformed_reference"
            )
        _check_ref_id(ref_id, where)
        return use(ref_id, where)

    return on_ref


def _check_task_id(task_id: str) -> None:
    if not isinstance(task_id, str) or not _TASK_ID_RE.fullmatch(task_id):
        raise VaultError("malformed task id", reason="bad_task_id")


def _check_ref_id(ref_id: str, where: str) -> None:
    if not isinstance(ref_id, str) or not _REF_RE.fullmatch(ref_id):
        raise VaultError(f"malformed secret reference at {where!r}", reason="malformed_reference")
