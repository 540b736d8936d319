"""The API client registry: who may ask for a token, with which scopes and limits.

Clients live in Redis: a hash ``tg:client:{client_id}`` per client and the set ``tg:clients``
of ids. A client's secret is stored only as a scrypt hash (``security.passwords``); the plain
secret is returned once, by :meth:`ClientRegistry.create` or :meth:`ClientRegistry.rotate_secret`.

Client ids are ``<slug of the name>-<8 hex digits>``. Every id is checked against that
pattern before it is put in a key, so an id taken from a request (``../x``, ``a:b``) never
reaches Redis. Hashing costs ~50-100 ms of CPU, so it runs in a thread, never on the loop.

This module is framework-free (no FastAPI); the HTTP layer maps :class:`ClientError`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import limits
import redis.asyncio
from redis.exceptions import WatchError

from security.errors import TaskgateError
from security.passwords import (
    hash_client_secret,
    new_client_secret,
    verify_against_dummy,
    verify_client_secret,
)
from workers.contract.keys import CLIENT_PREFIX, CLIENTS_SET

__all__ = [
    "CLIENTS_SET",
    "SUBMIT_ANY",
    "SUBMIT_PREFIX",
    "Client",
    "ClientError",
    "ClientRegistry",
    "client_key",
    "is_valid_client_id",
    "scope_allows",
    "validate_scopes",
]

_KEY_PREFIX = CLIENT_PREFIX
_SLUG_MAX = 32
_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}-[0-9a-f]{8}", re.ASCII)
# Names show up in logs, audit records and the CLI: plain printable ASCII only.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}", re.ASCII)
_TASK_NAME = r"[a-z0-9._-]{1,100}"
_SCOPE_RE = re.compile(rf"tasks:submit:(?:\*|{_TASK_NAME})|tasks:read|audit:read", re.ASCII)
SUBMIT_PREFIX = "tasks:submit:"
SUBMIT_ANY = "tasks:submit:*"
_MAX_SCOPES = 256
_MAX_LIMIT_CHARS = 64
_MAX_LIMIT_AMOUNT = 1_000_000
_MAX_QUEUED = 100_000
_WATCH_RETRIES = 10


class ClientError(TaskgateError):
    """A client operation was refused.

    ``reason`` is one of ``unknown_client``, ``bad_scope``, ``bad_name``, ``bad_limit``,
    ``corrupt_record`` (a stored hash that does not parse) or ``conflict`` (too many concurrent
    writers). Messages never contain a secret.
    """

    default_reason = "client"


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
        }


def is_valid_client_id(client_id: object) -> bool:
    """True if ``client_id`` has the shape ``<slug>-<8 hex>`` (safe to put in a Redis key)."""
    return isinstance(client_id, str) and _ID_RE.fullmatch(client_id) is not None


def client_key(client_id: str) -> str:
    """The Redis key of ``client_id``'s hash; refuses an id that is not well formed."""
    if not is_valid_client_id(client_id):
        raise ClientError("client id is not well formed", reason="unknown_client")
    return _KEY_PREFIX + client_id


def validate_scopes(scopes: Iterable[str] | str) -> frozenset[str]:
    """Check every scope against the grammar; a string is split on whitespace.

    Allowed: ``tasks:submit:<task>`` (task ``[a-z0-9._-]{1,100}``), ``tasks:submit:*``,
    ``tasks:read``, ``audit:read``. At least one scope is required.
    """
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not items:
        raise ClientError("at least one scope is required", reason="bad_scope")
    if len(items) > _MAX_SCOPES:
        raise ClientError(f"more than {_MAX_SCOPES} scopes", reason="bad_scope")
    for scope in items:
        if not isinstance(scope, str) or _SCOPE_RE.fullmatch(scope) is None:
            # The value is not echoed: it is caller input of unknown size and content.
            raise ClientError(
                "scope not allowed; use tasks:submit:<task>, tasks:submit:*, tasks:read"
                " or audit:read",
                reason="bad_scope",
            )
    return frozenset(items)


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    """True if ``granted`` covers ``needed``; ``tasks:submit:*`` covers every task submission.

    A ``needed`` scope outside the grammar is never allowed.
    """
    if not isinstance(needed, str) or _SCOPE_RE.fullmatch(needed) is None:
        return False
    held = {scope for scope in granted if isinstance(scope, str)}
    if needed in held:
        return True
    return needed.startswith(SUBMIT_PREFIX) and SUBMIT_ANY in held


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:_SLUG_MAX].rstrip("-")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ClientError(
            "name must be 1-64 characters of A-Z a-z 0-9 space . _ -, starting with a letter"
            " or digit",
            reason="bad_name",
        )
    return name


def _check_rate_limit(rate_limit: object) -> str:
    """Parse with ``limits``; exactly one positive limit, returned in canonical form."""
    refused = ClientError(
        'rate limit must be one limit such as "120/minute" or "10/2 seconds"', reason="bad_limit"
    )
    if not isinstance(rate_limit, str) or len(rate_limit) > _MAX_LIMIT_CHARS:
        raise refused
    try:
        items = limits.parse_many(rate_limit)
    except ValueError:
        raise refused from None
    if len(items) != 1 or not 1 <= items[0].amount <= _MAX_LIMIT_AMOUNT:
        raise refused
    item = items[0]
    unit = item.GRANULARITY.name
    per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount}/{per}"


def _check_max_queued(max_queued: object) -> int:
    if (
        isinstance(max_queued, bool)
        or not isinstance(max_queued, int)
        or not 1 <= max_queued <= _MAX_QUEUED
    ):
        raise ClientError(f"max_queued must be an integer 1..{_MAX_QUEUED}", reason="bad_limit")
    return max_queued


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value: bytes | str) -> str:
    # Works with and without decode_responses; a non-UTF-8 byte means the record was tampered.
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(
                "stored client record is not UTF-8", reason="corrupt_record"
            ) from None
    return value


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _to_client(client_id: str, fields: Mapping[str, str]) -> Client:
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
        )
    except (KeyError, ValueError):
        raise ClientError(
            f"stored record of client {client_id} is incomplete or malformed",
            reason="corrupt_record",
        ) from None


def _unknown(client_id: str) -> ClientError:
    # Only a validated id is ever echoed; anything else could be an injection attempt.
    shown = client_id if is_valid_client_id(client_id) else "(malformed id)"
    return ClientError(f"no client {shown}", reason="unknown_client")


class ClientRegistry:
    """Create, look up, disable and authenticate API clients stored in Redis.

    Works with a client with or without ``decode_responses``. Times are Unix seconds; the
    methods that write them take ``now`` so tests need no clock.
    """

    def __init__(self, redis: redis.asyncio.Redis) -> None:
        self._redis = redis

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
        name = _check_name(name)
        granted = validate_scopes(scopes)
        rate_limit = _check_rate_limit(rate_limit)
        max_queued = _check_max_queued(max_queued)
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
        }
        for _ in range(_WATCH_RETRIES):
            client_id = f"{_slug(name)}-{secrets.token_hex(4)}"
            if await self._write(client_id, fields, must_exist=False):
                return _to_client(client_id, fields), secret
        # 32 random bits colliding ten times in a row means something else is wrong.
        raise ClientError("could not allocate a unique client id", reason="conflict")

    async def get(self, client_id: str) -> Client | None:
        """The client, or None if the id is unknown or not well formed."""
        fields = await self._load(client_id)
        return None if fields is None else _to_client(client_id, fields)

    async def list(self) -> list[Client]:
        """Every registered client, oldest first. Ids in the set without a record are skipped."""
        members = sorted(_text(m) for m in await self._redis.smembers(CLIENTS_SET))
        ids = [m for m in members if is_valid_client_id(m)]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(client_key(client_id))
            rows = await pipe.execute()
        found = [_to_client(cid, _decode(row)) for cid, row in zip(ids, rows, strict=True) if row]
        return sorted(found, key=lambda c: (c.created_at, c.client_id))

    async def disable(self, client_id: str) -> Client:
        """Refuse the client's token requests and API calls from now on; return it."""
        await self._update(client_id, {"disabled": "1"})
        return await self._require(client_id)

    async def enable(self, client_id: str) -> Client:
        """Let a disabled client back in; return it."""
        await self._update(client_id, {"disabled": "0"})
        return await self._require(client_id)

    async def rotate_secret(self, client_id: str, *, now: float | None = None) -> str:
        """Replace the secret and return the new one; the old one stops working at once.

        Tokens already issued with the old secret are not revoked here.
        """
        if await self._load(client_id) is None:  # fail before paying for a hash
            raise _unknown(client_id)
        secret = new_client_secret()
        secret_hash = await asyncio.to_thread(hash_client_secret, secret)
        stamp = time.time() if now is None else now
        await self._update(
            client_id, {"secret_hash": secret_hash, "secret_rotated_at": repr(stamp)}
        )
        return secret

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if ``secret`` is its current secret and it is enabled, else None.

        Every path pays one scrypt check, so timing does not reveal whether the id exists or
        the client is disabled. A stored hash that does not parse raises
        :class:`~security.errors.ConfigError` (a storage problem, not a wrong guess).
        """
        fields = await self._load(client_id)
        if fields is None or "secret_hash" not in fields:
            await asyncio.to_thread(verify_against_dummy, secret)
            return None
        ok = await asyncio.to_thread(verify_client_secret, secret, fields["secret_hash"])
        client = _to_client(client_id, fields)
        if not ok or client.disabled:
            return None
        return client

    async def is_disabled(self, client_id: str) -> bool:
        """Cheap per-request check (one HGET): True if disabled, unknown or malformed."""
        if not is_valid_client_id(client_id):
            return True
        value = await self._redis.hget(client_key(client_id), "disabled")
        return value is None or _text(value) != "0"

    async def _load(self, client_id: str) -> dict[str, str] | None:
        if not is_valid_client_id(client_id):
            return None
        raw = await self._redis.hgetall(client_key(client_id))
        return _decode(raw) if raw else None

    async def _require(self, client_id: str) -> Client:
        client = await self.get(client_id)
        if client is None:
            raise _unknown(client_id)
        return client

    async def _update(self, client_id: str, fields: Mapping[str, str]) -> None:
        if not is_valid_client_id(client_id):
            raise _unknown(client_id)
        for attempt in range(_WATCH_RETRIES):
            written = await self._write(client_id, fields, must_exist=True)
            if written is None:
                # Lost a WATCH race to another writer: back off a few ms (jittered) and retry.
                await asyncio.sleep(secrets.randbelow(5 * (attempt + 1)) / 1000)
                continue
            if not written:
                raise _unknown(client_id)
            return
        raise ClientError("client record changed too often; try again", reason="conflict")

    async def _write(
        self, client_id: str, fields: Mapping[str, str], *, must_exist: bool
    ) -> bool | None:
        """HSET ``fields`` only if the record exists (update) or does not (create).

        True: written. False: the existence check failed. None: a concurrent write raced us.
        WATCH/MULTI instead of a Lua script: no EVAL permission is needed in the Redis ACL.
        """
        key = client_key(client_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if bool(await pipe.exists(key)) != must_exist:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                mapping: dict[Any, Any] = dict(fields)  # redis-py's Mapping key type is invariant
                pipe.hset(key, mapping=mapping)
                pipe.sadd(CLIENTS_SET, client_id)
                await pipe.execute()
            except WatchError:
                return None
        return True
