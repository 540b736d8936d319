"""The API client registry: who may ask for a token, with which scopes and limits.

Clients live in Redis: a hash ``tg:client:{client_id}`` per client and the set ``tg:clients``
of ids. A client's secret is stored only as a scrypt hash (``security.passwords``); the plain
secret is returned once, by :meth:`ClientRegistry.create` or :meth:`ClientRegistry.rotate_secret`.

Every record carries a state MAC (``security.stored_state``, label ``client``, bound to the
client id) over all of :data:`CLIENT_FIELDS`, in its field ``mac``. A record that fails it -
any field changed, added or deleted by someone without the state key, or a record written
before records were MAC'd - raises :class:`~security.errors.StoredStateError`: it is never
used and never silently rewritten. ``generation`` starts at 1 and grows with every secret
rotation, disable and enable; tokens carry the generation they were issued under, and the
gateway refuses any other, so each of those ends every token issued before.

Hashing costs ~50-100 ms of CPU, so it runs in a thread, never on the loop.
This module is framework-free (no FastAPI); the HTTP layer maps :class:`ClientError`.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio
from redis.exceptions import WatchError

from gateway.stores.client_records import (
    CLIENT_FIELDS,
    Client,
    client_from_values,
    decode_record,
    record_text,
    to_client,
    verify_fields,
)
from gateway.stores.client_rules import (
    CLIENTS_SET,
    SUBMIT_ANY,
    SUBMIT_PREFIX,
    ClientError,
    check_max_queued,
    check_name,
    check_rate_limit,
    client_key,
    is_valid_client_id,
    scope_allows,
    slug,
    validate_scopes,
)
from security.errors import StoredStateError
from security.keys import KeySet, SymmetricKey
from security.passwords import (
    hash_client_secret,
    new_client_secret,
    verify_against_dummy,
    verify_client_secret,
)
from security.stored_state import MAC_FIELD, Label, sign_record

__all__ = [
    "CLIENTS_SET",
    "CLIENT_FIELDS",
    "SUBMIT_ANY",
    "SUBMIT_PREFIX",
    "Client",
    "ClientError",
    "ClientRegistry",
    "client_from_values",
    "client_key",
    "is_valid_client_id",
    "scope_allows",
    "validate_scopes",
]

_WATCH_RETRIES = 10


def _unknown(client_id: str) -> ClientError:
    # Only a validated id is ever echoed; anything else could be an injection attempt.
    shown = client_id if is_valid_client_id(client_id) else "(malformed id)"
    return ClientError(f"no client {shown}", reason="unknown_client")


_Change = Callable[[dict[str, str]], dict[str, str]]


class ClientRegistry:
    """Create, look up, disable and authenticate API clients stored in Redis.

    Works with a client with or without ``decode_responses``. Times are Unix seconds; the
    methods that write them take ``now`` so tests need no clock. ``keys``: the state keys
    (gateway and operator tooling hold them; workers never do).
    """

    def __init__(self, redis: redis.asyncio.Redis, keys: KeySet[SymmetricKey]) -> None:
        self._redis = redis
        self._keys = keys

    async def create(
        self,
        name: str,
        scopes: Iterable[str] | str,
        *,
        rate_limit: str = "120/minute",
        max_queued: int = 100,
        now: float | None = None,
    ) -> tuple[Client, str]:
        """Register a client; return it and its plain secret (shown this once, never stored)."""
        name = check_name(name)
        granted = validate_scopes(scopes)
        rate_limit = check_rate_limit(rate_limit)
        max_queued = check_max_queued(max_queued)
        secret = new_client_secret()
        secret_hash = await asyncio.to_thread(hash_client_secret, secret)
        stamp = time.time() if now is None else now
        fields = {
            "name": name,
            "secret_hash": secret_hash,
            "scopes": " ".join(sorted(granted)),
            "rate_limit": rate_limit,
            "max_queued": str(max_queued),
            "disabled": "0",
            "created_at": repr(stamp),
            "secret_rotated_at": repr(stamp),
            "generation": "1",
        }
        for _ in range(_WATCH_RETRIES):
            client_id = f"{slug(name)}-{secrets.token_hex(4)}"
            if await self._write(client_id, fields, must_exist=False):
                return to_client(client_id, fields), secret
        # 32 random bits colliding ten times in a row means something else is wrong.
        raise ClientError("could not allocate a unique client id", reason="conflict")

    async def get(self, client_id: str) -> Client | None:
        """The client, or None if the id is unknown or not well formed (raises
        :class:`StoredStateError` for a record that fails its MAC)."""
        fields = await self._load(client_id)
        return None if fields is None else to_client(client_id, fields)

    async def list(self) -> list[Client]:
        """Every registered client whose record verifies, oldest first (see :meth:`scan`)."""
        return (await self.scan())[0]

    async def scan(
        self,
    ) -> tuple[builtins.list[Client], builtins.list[tuple[str, StoredStateError]]]:
        """Every client whose record verifies, oldest first, and the ids (with the error)
        of records that do not. Ids in the set without a record are skipped."""
        members = sorted(record_text(m) for m in await self._redis.smembers(CLIENTS_SET))
        ids = [m for m in members if is_valid_client_id(m)]
        if not ids:
            return [], []
        async with self._redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(client_key(client_id))
            rows = await pipe.execute()
        found: builtins.list[Client] = []
        refused: builtins.list[tuple[str, StoredStateError]] = []
        for client_id, row in zip(ids, rows, strict=True):
            if not row:
                continue
            fields = decode_record(row)
            try:
                verify_fields(self._keys, client_id, fields)
            except StoredStateError as exc:
                refused.append((client_id, exc))
                continue
            found.append(to_client(client_id, fields))
        return sorted(found, key=lambda c: (c.created_at, c.client_id)), refused

    async def disable(self, client_id: str) -> Client:
        """Refuse the client's token requests and API calls from now on; return it.
        Its generation grows: tokens issued before stay refused once it is enabled again."""
        await self._update(client_id, lambda _old: {"disabled": "1"})
        return await self._require(client_id)

    async def enable(self, client_id: str) -> Client:
        """Let a disabled client back in (with new tokens only); return it."""
        await self._update(client_id, lambda _old: {"disabled": "0"})
        return await self._require(client_id)

    async def update(
        self, client_id: str, scopes: Iterable[str] | str, *, rate_limit: str, max_queued: int
    ) -> Client:
        """Replace scopes and limits (checked like :meth:`create`); every token issued
        before ends, as the generation grows."""
        granted = " ".join(sorted(validate_scopes(scopes)))
        limit, cap = check_rate_limit(rate_limit), str(check_max_queued(max_queued))
        change = {"scopes": granted, "rate_limit": limit, "max_queued": cap}
        await self._update(client_id, lambda _old: change)
        return await self._require(client_id)

    async def rotate_secret(self, client_id: str, *, now: float | None = None) -> str:
        """Replace the secret and return the new one; the old one stops working at once,
        and so does every token issued before (the generation grows)."""
        if await self._load(client_id) is None:  # fail before paying for a hash
            raise _unknown(client_id)
        secret = new_client_secret()
        secret_hash = await asyncio.to_thread(hash_client_secret, secret)
        stamp = time.time() if now is None else now
        await self._update(
            client_id,
            lambda _old: {"secret_hash": secret_hash, "secret_rotated_at": repr(stamp)},
        )
        return secret

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if ``secret`` is its current secret and it is enabled, else None.

        Every path pays one scrypt check, so timing does not reveal whether the id exists or
        the client is disabled. A record that fails its MAC raises :class:`StoredStateError`
        (after the dummy check); a stored hash that does not parse raises
        :class:`~security.errors.ConfigError` (a storage problem, not a wrong guess).
        """
        try:
            fields = await self._load(client_id)
        except StoredStateError:
            await asyncio.to_thread(verify_against_dummy, secret)
            raise
        if fields is None:
            await asyncio.to_thread(verify_against_dummy, secret)
            return None
        ok = await asyncio.to_thread(verify_client_secret, secret, fields["secret_hash"])
        client = to_client(client_id, fields)
        if not ok or client.disabled:
            return None
        return client

    async def is_disabled(self, client_id: str) -> bool:
        """True if disabled, unknown, malformed or failing its MAC (one HMGET)."""
        if not is_valid_client_id(client_id):
            return True
        values = await self._redis.hmget(client_key(client_id), [*CLIENT_FIELDS, MAC_FIELD])
        try:
            client = client_from_values(self._keys, client_id, values)
        except (StoredStateError, ClientError):
            return True
        return client is None or client.disabled

    async def _load(self, client_id: str) -> dict[str, str] | None:
        if not is_valid_client_id(client_id):
            return None
        raw = await self._redis.hgetall(client_key(client_id))
        if not raw:
            return None
        fields = decode_record(raw)
        verify_fields(self._keys, client_id, fields)
        return fields

    async def _require(self, client_id: str) -> Client:
        client = await self.get(client_id)
        if client is None:
            raise _unknown(client_id)
        return client

    async def _update(self, client_id: str, change: _Change) -> None:
        if not is_valid_client_id(client_id):
            raise _unknown(client_id)
        for attempt in range(_WATCH_RETRIES):
            written = await self._write(client_id, change, must_exist=True)
            if written is None:
                # Lost a WATCH race to another writer: back off a few ms (jittered) and retry.
                await asyncio.sleep(secrets.randbelow(5 * (attempt + 1)) / 1000)
                continue
            if not written:
                raise _unknown(client_id)
            return
        raise ClientError("client record changed too often; try again", reason="conflict")

    async def _write(
        self, client_id: str, change: Mapping[str, str] | _Change, *, must_exist: bool
    ) -> bool | None:
        """Create the record (``change``: every field) only if it does not exist, or update
        an existing one (``change``: old fields -> changed fields, generation + 1) only if
        it verifies; either way the whole record is MAC'd again.

        True: written. False: the existence check failed. None: a concurrent write raced us.
        WATCH/MULTI instead of a Lua script: no EVAL permission is needed in the Redis ACL.
        """
        key = client_key(client_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.hgetall(key) if must_exist else None
                if not must_exist and await pipe.exists(key):
                    return False
                if must_exist and not raw:
                    return False
                if raw:
                    old = decode_record(raw)
                    verify_fields(self._keys, client_id, old)  # never re-sign a tampered record
                    changes = change(old) if callable(change) else dict(change)
                    fields = {n: old[n] for n in CLIENT_FIELDS if n in old} | changes
                    fields["generation"] = str(int(old.get("generation", "0") or 0) + 1)
                else:
                    fields = dict(change) if not callable(change) else {}
                fields[MAC_FIELD] = sign_record(
                    self._keys, Label.CLIENT, client_id, {n: fields.get(n) for n in CLIENT_FIELDS}
                )
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                mapping: dict[Any, Any] = dict(fields)  # redis-py's Mapping key type is invariant
                pipe.hset(key, mapping=mapping)
                pipe.sadd(CLIENTS_SET, client_id)
                await pipe.execute()
            except WatchError:
                return None
        return True
