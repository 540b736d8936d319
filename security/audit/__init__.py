"""The tamper-evident audit log: one import for writers, verifiers and readers.

The log is a Redis stream (default ``tg:audit``) of fixed-field records, each chained to
the previous one and MACed (HMAC-SHA256) with the audit key of the role that wrote it
(``audit-gateway``, ``audit-worker``, ``audit-operator``). Pieces:

* :mod:`security.audit.actions`: :class:`AuditAction`, every action taskgate writes;
* :mod:`security.audit.chain`: the record, canonical bytes, MAC and links (pure);
* :mod:`security.audit.store`: :class:`AuditWriter` / :class:`AsyncAuditWriter`, which
  append batches atomically with a compare-and-append Lua script;
* :mod:`security.audit.verifier`: the chain walk that names the first bad entry (pure);
* :mod:`security.audit.checkpoint`: Ed25519-signed heads kept outside Redis;
* :mod:`security.audit.read`: export, tail and the filtered, paged listing;
* :mod:`security.audit.refusals`: refusals counted per window and source, summarised;
* :mod:`security.audit.anchor`: signed checkpoints appended to a file outside Redis;
* :mod:`security.audit.archive` / :mod:`security.audit.retention`: archive segments and trim;
* :mod:`security.audit.walk` / :mod:`security.audit.span`: bounded, incremental walks and
  verification across archive + live against the newest anchor.

This module adds the I/O around verification and checkpoints. Typical use::

    writer = AuditWriter(redis_client, ring.audit)  # this role's own audit keys
    writer.append(AuditRecord.make(actor="client:42", action=AuditAction.TASK_SUBMIT,
                                   outcome="allowed", target=task_id, request_id=rid))
    report = verify(redis_client, ring.audit_keys(), checkpoint=verify_checkpoint(cp, ring.signing))

Use a client without ``decode_responses`` for verification: a byte that is not UTF-8
then shows as a bad MAC rather than a decoding crash in redis-py.
"""

from __future__ import annotations

import redis
import redis.asyncio

from security.audit.actions import AuditAction
from security.audit.chain import (
    EMPTY_HEAD,
    GENESIS,
    MAX_FIELD_CHARS,
    MAX_REASON_CHARS,
    AuditEntry,
    AuditKeys,
    AuditRecord,
    Head,
    Outcome,
    neutralise,
    parse_head,
)
from security.audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from security.audit.read import (
    AuditPage,
    AuditQuery,
    afind_newest,
    afind_records,
    aiter_records,
    atail,
    entry_fields,
    find_records,
    iter_records,
    tail,
    unavailable,
)
from security.audit.store import (
    DEFAULT_STREAM,
    AsyncAuditWriter,
    AuditWriter,
    Committed,
    Earlier,
    Write,
    aread_head,
    read_head,
)
from security.audit.verifier import BadRecord, ChainVerifier, VerifyReport
from security.errors import AuditError
from security.keys import SigningKey

__all__ = [
    "DEFAULT_STREAM",
    "GENESIS",
    "MAX_FIELD_CHARS",
    "MAX_REASON_CHARS",
    "AsyncAuditWriter",
    "AuditAction",
    "AuditEntry",
    "AuditKeys",
    "AuditPage",
    "AuditQuery",
    "AuditRecord",
    "AuditWriter",
    "BadRecord",
    "Checkpoint",
    "Committed",
    "Earlier",
    "Head",
    "Outcome",
    "VerifyReport",
    "Write",
    "afind_newest",
    "afind_records",
    "aiter_records",
    "amake_checkpoint",
    "atail",
    "averify",
    "find_records",
    "iter_records",
    "make_checkpoint",
    "neutralise",
    "tail",
    "verify",
    "verify_checkpoint",
    "verify_or_raise",
]

VERIFY_PAGE = 1000


def _verifier(
    keys: AuditKeys, stream: str, head: str | None, checkpoint: Checkpoint | None
) -> ChainVerifier:
    if checkpoint is not None and checkpoint.stream != stream:
        raise AuditError("the checkpoint belongs to another stream", reason="bad_checkpoint")
    pinned = None if checkpoint is None else checkpoint.head
    return ChainVerifier(keys, stream=stream, head=head, pinned=pinned)


def verify(
    client: redis.Redis,
    keys: AuditKeys,
    *,
    stream: str = DEFAULT_STREAM,
    checkpoint: Checkpoint | None = None,
    page_size: int = VERIFY_PAGE,
) -> VerifyReport:
    """Walk the whole stream in pages and report whether the chain holds.

    Every audit key in ``keys`` (each role's set: a ring's ``audit_keys()``) verifies,
    retired ones included, so history stays verifiable after a rotation. ``checkpoint``
    (from :func:`verify_checkpoint`) also catches a cut tail, which a rewound head key
    otherwise hides. A broken chain is reported, never raised; :class:`AuditError` means
    Redis could not be read (``unavailable``) or the checkpoint is for another stream
    (``bad_checkpoint``).
    """
    try:
        verifier = _verifier(keys, stream, read_head(client, stream), checkpoint)
        lower = "-"
        while not verifier.broken:
            page = client.xrange(stream, min=lower, count=page_size) or []
            for raw in page:
                stream_id, fields = entry_fields(raw)
                if not verifier.feed(stream_id, fields):
                    break
                lower = f"({stream_id}"
            if len(page) < page_size:
                break
        return verifier.finish(read_head(client, stream))
    except redis.RedisError as exc:
        raise unavailable(exc) from exc


async def averify(
    client: redis.asyncio.Redis,
    keys: AuditKeys,
    *,
    stream: str = DEFAULT_STREAM,
    checkpoint: Checkpoint | None = None,
    page_size: int = VERIFY_PAGE,
) -> VerifyReport:
    """Asyncio twin of :func:`verify`."""
    try:
        verifier = _verifier(keys, stream, await aread_head(client, stream), checkpoint)
        lower = "-"
        while not verifier.broken:
            page = await client.xrange(stream, min=lower, count=page_size) or []
            for raw in page:
                stream_id, fields = entry_fields(raw)
                if not verifier.feed(stream_id, fields):
                    break
                lower = f"({stream_id}"
            if len(page) < page_size:
                break
        return verifier.finish(await aread_head(client, stream))
    except redis.RedisError as exc:
        raise unavailable(exc) from exc


def verify_or_raise(
    client: redis.Redis,
    keys: AuditKeys,
    *,
    stream: str = DEFAULT_STREAM,
    checkpoint: Checkpoint | None = None,
) -> VerifyReport:
    """:func:`verify`, raising :class:`AuditChainBrokenError` if the chain is broken."""
    return verify(client, keys, stream=stream, checkpoint=checkpoint).raise_if_broken()


def _head_to_sign(raw: str | None, stream_exists: bool) -> Head:
    if raw is not None:
        return parse_head(raw)
    if stream_exists:
        raise AuditError("audit stream exists but its head key is gone", reason="head_missing")
    return EMPTY_HEAD


def make_checkpoint(
    client: redis.Redis,
    signer: SigningKey,
    *,
    stream: str = DEFAULT_STREAM,
    keys: AuditKeys | None = None,
    now: float | None = None,
) -> dict[str, object]:
    """Sign the current head with ``signer`` (Ed25519); return the JSON-ready checkpoint.

    Without ``keys`` the head key is signed as it stands; with ``keys`` the chain is
    verified first (:class:`AuditChainBrokenError` if broken) and the verified head is
    signed, so a tampered log is never blessed. Keep the result outside Redis.
    """
    if keys is not None:
        report = verify_or_raise(client, keys, stream=stream)
        head = Head(report.head_seq, report.head_mac)
    else:
        try:
            raw, exists = read_head(client, stream), bool(client.exists(stream))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        head = _head_to_sign(raw, exists)
    return sign_checkpoint(head, signer, stream=stream, now=now).to_dict()


async def amake_checkpoint(
    client: redis.asyncio.Redis,
    signer: SigningKey,
    *,
    stream: str = DEFAULT_STREAM,
    keys: AuditKeys | None = None,
    now: float | None = None,
) -> dict[str, object]:
    """Asyncio twin of :func:`make_checkpoint`."""
    if keys is not None:
        report = (await averify(client, keys, stream=stream)).raise_if_broken()
        head = Head(report.head_seq, report.head_mac)
    else:
        try:
            raw, exists = await aread_head(client, stream), bool(await client.exists(stream))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        head = _head_to_sign(raw, exists)
    return sign_checkpoint(head, signer, stream=stream, now=now).to_dict()
