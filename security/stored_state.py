"""State MACs: records the gateway stores in Redis and later acts on, made unforgeable.

Redis is shared with workers and reachable by anyone holding a Redis identity; a record
the gateway reads back (a client's scopes and secret hash, a task's owner, the list of
revoked tokens) must therefore carry proof that the gateway wrote it. That proof is an
HMAC-SHA256 under a ``state`` key (:class:`~security.keys.Purpose.STATE`), which the
gateway and operator tooling hold and a worker never does.

What is authenticated, exactly::

    "taskgate-state-v1" | kid | label | record id | for each field, sorted by name:
                                                      name | present? | value

every item length-prefixed (4 bytes, big-endian), so no two different records encode
alike. The *label* (:class:`Label`) separates record types (a client record's MAC never
verifies as a task's) and the *record id* binds the MAC to one key in Redis (a record
copied under another id fails). A field that is absent (``None``) is encoded as absent:
deleting a MAC'd field breaks the MAC as changing it does.

The tag stored next to the fields is ``<kid>:<base64url(mac)>``; verifying looks the key
up by ``kid`` among the live state keys, so state keys rotate like the others (sign with
the newest, verify with any live one, retire to refuse).

Every refusal is a :class:`~security.errors.StoredStateError` whose ``reason`` is one of
``missing_mac`` (a record written without one, e.g. before this scheme), ``malformed_mac``,
``unknown_key``, ``retired_key`` or ``bad_mac``. No message contains a stored value.

Note: a MAC proves who wrote a record, not that it is the newest one the gateway wrote;
rolling a whole record back to an earlier authentic version is caught by the callers'
version checks (see ``docs/stored-state.md``), not here.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
from collections.abc import Mapping

from security.errors import KeyRetiredError, KeyRingError, StoredStateError
from security.keys import KeySet, Purpose, SymmetricKey, valid_kid

__all__ = ["MAC_FIELD", "Label", "sign_record", "verify_record"]

MAC_FIELD = "mac"  # the conventional name of the field holding the tag
_DOMAIN = b"taskgate-state-v1"
_MAC_BYTES = 32
_MAX_TAG = 200  # a kid (<= 64 characters) and 43 base64 characters; refuse anything longer


class Label(enum.StrEnum):
    """Domain separation: one label per record type, never shared."""

    CLIENT = "client"  # tg:client:{client id}
    TASK = "task"  # tg:task:{task id}: owner, name, current seal, replays
    REVOCATIONS = "revocations"  # tg:revoked:jtis: every revoked, unexpired token id
    REVOKED_JTI = "revoked-jti"  # tg:revoked:jti:{jti}
    OPERATOR = "operator"  # tg:operator:{name}: role, credential hash, revoked


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _message(kid: str, label: Label, record_id: str, fields: Mapping[str, str | None]) -> bytes:
    parts = [
        _DOMAIN,
        _frame(kid.encode()),
        _frame(label.value.encode()),
        _frame(record_id.encode()),
    ]
    for name in sorted(fields):
        value = fields[name]
        parts.append(_frame(name.encode()))
        parts.append(b"\x00" if value is None else b"\x01" + _frame(value.encode()))
    return b"".join(parts)


def _require_state_keys(keys: KeySet[SymmetricKey]) -> None:
    if keys.purpose != Purpose.STATE:
        raise KeyRingError(
            f"{keys.purpose} keys cannot authenticate stored state", reason="purpose"
        )


def sign_record(
    keys: KeySet[SymmetricKey], label: Label, record_id: str, fields: Mapping[str, str | None]
) -> str:
    """The tag to store with ``fields`` of record ``record_id``: newest live state key."""
    _require_state_keys(keys)
    key = keys.current()
    mac = hmac.digest(key.secret, _message(key.kid, label, record_id, fields), "sha256")
    return f"{key.kid}:{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def verify_record(
    keys: KeySet[SymmetricKey],
    label: Label,
    record_id: str,
    fields: Mapping[str, str | None],
    tag: str | bytes | None,
) -> None:
    """Raise :class:`StoredStateError` unless ``tag`` authenticates exactly ``fields``."""
    _require_state_keys(keys)
    what = label.value
    if tag is None or tag in ("", b""):
        raise StoredStateError(
            f"stored {what} record has no state MAC (written without the state key)",
            record=what,
            reason="missing_mac",
        )
    kid, mac = _parse_tag(tag, what)
    try:
        key = keys.get(kid)
    except KeyRetiredError:
        raise StoredStateError(
            f"stored {what} record was authenticated with a retired state key",
            record=what,
            reason="retired_key",
        ) from None
    except KeyRingError:
        raise StoredStateError(
            f"stored {what} record names an unknown state key", record=what, reason="unknown_key"
        ) from None
    expected = hmac.digest(key.secret, _message(key.kid, label, record_id, fields), "sha256")
    if not hmac.compare_digest(expected, mac):
        raise StoredStateError(
            f"stored {what} record failed its state MAC", record=what, reason="bad_mac"
        )


def _parse_tag(tag: str | bytes, what: str) -> tuple[str, bytes]:
    malformed = StoredStateError(
        f"stored {what} record has a malformed state MAC", record=what, reason="malformed_mac"
    )
    if isinstance(tag, bytes):
        try:
            tag = tag.decode("ascii")
        except UnicodeDecodeError:
            raise malformed from None
    if not isinstance(tag, str) or len(tag) > _MAX_TAG:
        raise malformed
    kid, sep, encoded = tag.partition(":")
    if not sep or not valid_kid(kid):
        raise malformed
    try:
        mac = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise malformed from None
    # Only the canonical encoding of exactly 32 bytes: no byte of a tag may change unseen.
    if len(mac) != _MAC_BYTES or base64.urlsafe_b64encode(mac).rstrip(b"=").decode() != encoded:
        raise malformed
    return kid, mac
