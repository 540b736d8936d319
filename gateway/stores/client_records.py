"""A client record as the registry stores it: its fields, their MAC, and the
:class:`Client` read from them.

Every record carries a state MAC (``security.stored_state``, label ``client``, bound to the
client id) over all of :data:`CLIENT_FIELDS`; :func:`verify_fields` refuses a record that
fails it. A field that is not UTF-8, missing or malformed means the record was tampered
with: :class:`~gateway.stores.client_rules.ClientError` (``corrupt_record``), never a guess.
:mod:`gateway.stores.clients` reads and writes the records; this module only decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.stores.client_rules import ClientError
from security.keys import KeySet, SymmetricKey
from security.stored_state import MAC_FIELD, Label, verify_record

__all__ = [
    "CLIENT_FIELDS",
    "Client",
    "client_from_values",
    "decode_record",
    "record_text",
    "to_client",
    "verify_fields",
]

# Every field of a client record; all are covered by its MAC (stored in MAC_FIELD).
CLIENT_FIELDS = (
    "name",
    "secret_hash",
    "scopes",
    "rate_limit",
    "max_queued",
    "disabled",
    "created_at",
    "secret_rotated_at",
    "generation",
)


@dataclass(frozen=True)
class Client:
    """A registered client as stored, minus its secret hash (which never leaves the registry)."""

    client_id: str
    name: str
    scopes: frozenset[str]
    rate_limit: str
    max_queued: int
    disabled: bool
    created_at: float
    secret_rotated_at: float
    generation: int = 1

    def public(self) -> dict[str, Any]:
        """A JSON-ready view (scopes sorted, times as ISO 8601 UTC); no secret in it."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "rate_limit": self.rate_limit,
            "max_queued": self.max_queued,
            "disabled": self.disabled,
            "created_at": _iso(self.created_at),
            "secret_rotated_at": _iso(self.secret_rotated_at),
            "generation": self.generation,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_text(value: bytes | str) -> str:
    # Works with and without decode_responses; a non-UTF-8 byte means the record was tampered.
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(
                "stored client record is not UTF-8", reason="corrupt_record"
            ) from None
    return value


def decode_record(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {record_text(k): record_text(v) for k, v in raw.items()}


def verify_fields(keys: KeySet[SymmetricKey], client_id: str, fields: Mapping[str, str]) -> None:
    """Refuse a record whose fields are not exactly what the gateway MAC'd (any other
    field is never read, and never signed again by an update)."""
    covered = {name: fields.get(name) for name in CLIENT_FIELDS}
    verify_record(keys, Label.CLIENT, client_id, covered, fields.get(MAC_FIELD))


def to_client(client_id: str, fields: Mapping[str, str]) -> Client:
    try:
        return Client(
            client_id=client_id,
            name=fields["name"],
            scopes=frozenset(fields["scopes"].split()),
            rate_limit=fields["rate_limit"],
            max_queued=int(fields["max_queued"]),
            disabled=fields["disabled"] != "0",  # anything but "0" fails closed
            created_at=float(fields["created_at"]),
            secret_rotated_at=float(fields["secret_rotated_at"]),
            generation=int(fields["generation"]),
        )
    except (KeyError, ValueError):
        raise ClientError(
            f"stored record of client {client_id} is incomplete or malformed",
            reason="corrupt_record",
        ) from None


def client_from_values(
    keys: KeySet[SymmetricKey], client_id: str, values: Sequence[Any]
) -> Client | None:
    """The client from an ``HMGET`` of ``(*CLIENT_FIELDS, MAC_FIELD)``, verified; None if
    there is no record at all. Raises :class:`StoredStateError` if the MAC fails (the
    per-request check: the same single read the disabled flag used to be)."""
    if len(values) != len(CLIENT_FIELDS) + 1:
        raise ValueError("expected one value per client field and the MAC")
    if all(v is None for v in values):
        return None
    names = (*CLIENT_FIELDS, MAC_FIELD)
    fields = {name: record_text(v) for name, v in zip(names, values, strict=True) if v is not None}
    verify_fields(keys, client_id, fields)
    return to_client(client_id, fields)
