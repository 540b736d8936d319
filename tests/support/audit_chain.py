"""An audit chain for the audit log's tests to write, read raw and tamper with.

The stream and head key, the chain and signing keys, records, and the stream as an
attacker with Redis write access (and no key) sees and rewrites it.
"""

from __future__ import annotations

import os
from typing import Any

import redis
import redis.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.audit import AuditRecord, AuditWriter
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from tests.support.replies import as_text, stream_range

STREAM = "tg:audit"
HEAD_KEY = "tg:audit:head"
SECRET = os.urandom(32)
KEY = SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, SECRET)
KEYS = KeySet(Purpose.AUDIT_GATEWAY, [KEY])
_PRIVATE = Ed25519PrivateKey.generate()
SIGNER = SigningKey("signing-1", _PRIVATE.public_key(), _PRIVATE)
VERIFIERS = KeySet(Purpose.SIGNING, [SigningKey("signing-1", _PRIVATE.public_key())])

Raw = list[tuple[str, dict[str, str]]]


def audit_record(i: int = 0, **overrides: Any) -> AuditRecord:
    """The ``i``-th record of a test log, with ``overrides``."""
    fields: dict[str, Any] = {
        "actor": "client:42",
        "action": "task.submit",
        "outcome": "allowed",
        "target": f"task-{i}",
        "request_id": f"req-{i}",
        "now": 1_000.0 + i,
    }
    return AuditRecord.make(**(fields | overrides))


def fill_log(client: redis.Redis, n: int) -> AuditWriter:
    """Append ``n`` records and return the writer that did."""
    writer = AuditWriter(client, KEYS)
    writer.append_many(audit_record(i) for i in range(n))
    return writer


def raw_entries(client: redis.Redis, stream: str = STREAM) -> Raw:
    """The stream's entries as text, as anyone reading Redis sees them."""
    return [
        (as_text(sid), {as_text(k): as_text(v) for k, v in (fields or {}).items()})
        for sid, fields in stream_range(client, stream)
    ]


def rewrite_stream(client: redis.Redis, entries: Raw, stream: str = STREAM) -> None:
    """What an attacker with Redis write access (no key) can do: rebuild the stream by hand."""
    client.delete(stream)
    for sid, fields in entries:
        client.xadd(stream, fields, id=sid)  # type: ignore[arg-type]
