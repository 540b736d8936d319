"""The gateway's checks of stored state on the request path: client record, token
generation, revoked tokens. Each refusal of a record that fails its MAC is audited
(``state.refused``, with the record and the reason) and answered as a token refusal.

Revoked tokens: ``tg:revoked:jtis`` (fields ``jtis``, ``version``, ``mac``; label
``revocations``, id ``jti``) lists every revoked token id that has not expired yet as
``<jti>:<exp>`` pairs, MAC'd with a version (nanoseconds, growing with each revocation)
that the list never loses (no TTL: expired entries are dropped at each revocation); each
revocation also writes ``tg:revoked:jti:{jti}`` (its existence alone refuses the token).
Deleting the per-token key is detected (the MAC'd list still names the jti: refused and
audited as ``revocation deleted``); changing or trimming the list breaks its MAC; putting
an older authentic list back is caught by each gateway process that saw a newer version.
Note: deleting the list *and* the token's own key needs write access to both (never a
worker's); a process that never saw the list then cannot tell (see docs/stored-state.md).
All of it is read in the round trip the request makes anyway.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores.clients import CLIENT_FIELDS, Client, ClientError, client_from_values
from gateway.stores.task_records import verify_task
from security.audit.actions import AuditAction
from security.errors import StoredStateError, TokenError
from security.keys import KeySet, SymmetricKey
from security.stored_state import MAC_FIELD, Label, sign_record, verify_record
from security.tokens import AccessClaims
from workers.contract.keys import REVOKED_JTI_LIST, revoked_jti_key
from workers.contract.wire import decode_record

__all__ = [
    "CLIENT_READ",
    "REVOCATIONS_KEY",
    "REVOCATION_READ",
    "audit_refused",
    "check_principal",
    "conflict",
    "parse_revocations",
    "refuse_stored",
    "revoke_jti",
    "revoked_jti_key",
    "trusted_record",
]

REVOCATIONS_KEY = REVOKED_JTI_LIST
REVOCATION_READ = ("jtis", "version", MAC_FIELD)
CLIENT_READ = (*CLIENT_FIELDS, MAC_FIELD)
_REVOCATIONS_ID = "jti"
_WATCH_RETRIES = 10


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Revocations:
    """The verified list of revoked, unexpired token ids (``jti`` -> expiry)."""

    version: int
    entries: dict[str, int]

    def encode(self) -> str:
        return " ".join(f"{jti}:{exp}" for jti, exp in sorted(self.entries.items()))


def parse_revocations(keys: KeySet[SymmetricKey], values: Sequence[Any]) -> Revocations:
    """The list from an ``HMGET`` of :data:`REVOCATION_READ`, verified. No record at all
    is an empty list at version 0 (refused by :func:`check_principal` if this process
    has seen a later one)."""
    jtis, version, mac = (None if v is None else _text(v) for v in values)
    if jtis is None and version is None and mac is None:
        return Revocations(0, {})
    fields = {"jtis": jtis, "version": version}
    verify_record(keys, Label.REVOCATIONS, _REVOCATIONS_ID, fields, mac)
    entries: dict[str, int] = {}
    try:
        for item in (jtis or "").split():
            jti, _, exp = item.partition(":")
            entries[jti] = int(exp)
        return Revocations(int(version or "0"), entries)
    except ValueError:  # authentic but unreadable: still never acted on
        raise StoredStateError(
            "revocation list is malformed", record=Label.REVOCATIONS.value, reason="malformed"
        ) from None


async def trusted_record(
    state: GatewayState, task_id: str, raw: Any, *, actor: str, request_id: str
) -> dict[str, str] | None:
    """The task record if its gateway fields (owner, name, seal, replays) verify; else
    None, the refusal audited (``state.refused``). Never repaired."""
    record = decode_record(raw)
    try:
        verify_task(state.keys.state, task_id, record)
    except StoredStateError as exc:
        await audit_refused(state, exc, actor=actor, target=task_id, request_id=request_id)
        return None
    return record


async def audit_refused(
    state: GatewayState, exc: StoredStateError, *, actor: str, target: str, request_id: str
) -> None:
    """Append the ``state.refused`` record of a stored record that failed its check."""
    await state.record(
        actor=actor,
        action=AuditAction.STATE_REFUSED,
        outcome="denied",
        target=target,
        reason=f"{exc.record} {exc.reason}",
        request_id=request_id,
    )


def conflict(exc: StoredStateError) -> ApiError:
    """The admin's answer to stored state that failed its check (nothing is rewritten)."""
    return ApiError(
        409,
        "Stored state refused",
        f"the stored {exc.record} record failed its integrity check ({exc.reason})",
        kind="state-refused",
    )


async def refuse_stored(
    state: GatewayState, exc: StoredStateError, *, actor: str, target: str, request_id: str
) -> TokenError:
    """Audit a record that failed its check; the token refusal to raise."""
    await audit_refused(state, exc, actor=actor, target=target, request_id=request_id)
    return TokenError(f"stored {exc.record} record refused", reason=f"{exc.record}_{exc.reason}")


def _rolled_back(record: str, what: str) -> StoredStateError:
    return StoredStateError(
        f"stored {record} record is older than one this gateway read ({what})",
        record=record,
        reason="rolled_back",
    )


async def check_principal(
    state: GatewayState,
    claims: AccessClaims,
    client_values: Sequence[Any],
    revocation_values: Sequence[Any],
    jti_key_exists: Any,
    *,
    request_id: str,
) -> Client:
    """The token's client, if its record verifies, it is enabled, the token carries its
    current generation and the token is not revoked; else a :class:`TokenError` (audited
    first when stored state failed its check)."""
    actor = f"client:{claims.sub}"
    target = f"client:{claims.sub}"
    try:
        client = client_from_values(state.keys.state, claims.sub, client_values)
        if client is not None and not state.high_water(target, client.generation):
            raise _rolled_back(Label.CLIENT.value, "generation")
        target = "revocations"
        revocations = parse_revocations(state.keys.state, revocation_values)
        # No list at all (never written, or Redis emptied) is not a rollback: see Note above.
        if revocations.version and not state.high_water(target, revocations.version):
            raise _rolled_back(Label.REVOCATIONS.value, "version")
    except StoredStateError as exc:
        raise await refuse_stored(
            state, exc, actor=actor, target=target, request_id=request_id
        ) from None
    except ClientError:
        raise TokenError("client record unreadable", reason="client_corrupt") from None
    if client is None or client.disabled:
        raise TokenError("client disabled or unknown", reason="client_disabled")
    if claims.gen != client.generation:
        raise TokenError("token issued under an earlier client generation", reason="stale")
    if claims.jti in revocations.entries and not jti_key_exists:
        deleted = StoredStateError(
            "a revocation was deleted", record="revocation", reason="deleted"
        )
        raise await refuse_stored(
            state, deleted, actor=actor, target=f"jti:{claims.jti}", request_id=request_id
        )
    if jti_key_exists or claims.jti in revocations.entries:
        raise TokenError("token revoked", reason="revoked")
    return client


async def revoke_jti(state: GatewayState, jti: str, *, until: int) -> None:
    """Add ``jti`` (valid until ``until``) to the MAC'd list, dropping expired entries,
    and write its own key. Refuses (:class:`StoredStateError`) to extend a list that fails
    its MAC: an operator looks at it first, nothing rewrites it silently."""
    redis = state.redis
    for attempt in range(_WATCH_RETRIES):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(REVOCATIONS_KEY)
                current = parse_revocations(
                    state.keys.state, await pipe.hmget(REVOCATIONS_KEY, list(REVOCATION_READ))
                )
                now = int(time.time())
                entries = {j: e for j, e in current.entries.items() if e > now}
                entries[jti] = max(until, entries.get(jti, 0))
                # A clock-based version: it keeps growing even if the list is lost.
                fresh = Revocations(max(current.version + 1, time.time_ns()), entries)
                fields = {"jtis": fresh.encode(), "version": str(fresh.version)}
                mac = sign_record(state.keys.state, Label.REVOCATIONS, _REVOCATIONS_ID, fields)
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                record: dict[Any, Any] = {**fields, MAC_FIELD: mac}
                pipe.hset(REVOCATIONS_KEY, mapping=record)
                pipe.set(revoked_jti_key(jti), "1", exat=until + 60)
                await pipe.execute()
            except WatchError:
                await asyncio.sleep(secrets.randbelow(5 * (attempt + 1)) / 1000)
                continue
        state.high_water("revocations", fresh.version)
        return
    raise ClientError("revocation list changed too often; try again", reason="conflict")
