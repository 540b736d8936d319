"""The client registry (gateway.stores.clients) against the real TLS Redis: its records.

Creating, reading and listing clients (the stored hash layout, no plain secret, ids),
and disabling, enabling and rotating them, also under concurrent updates.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.typing import KeyT

import gateway.stores.clients as clients_mod
from gateway.stores.clients import CLIENTS_SET, Client, ClientError, ClientRegistry, client_key
from security.passwords import CLIENT_SECRET_PREFIX
from security.stored_state import Label, sign_record
from tests.support.replies import as_bytes
from tests.support.stored_keys import stored_keys as _stored_keys

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
KEYRING_STATE_PREFIX = b"state-"  # a tag names its state key: <kid>:<mac>


def _all_values(client: redis.Redis) -> list[bytes]:
    values: list[bytes] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                values += [as_bytes(field), as_bytes(value)]
        elif kind == b"set":
            values += [as_bytes(member) for member in client.smembers(key)]
        values.append(key)
    return values


# --- create / get / list ---------------------------------------------------------------


async def test_create_returns_client_and_plain_secret(registry: ClientRegistry) -> None:
    """create stores the client and returns it with a fresh prefixed secret."""
    client, secret = await registry.create(
        "Billing Service", ["tasks:submit:email.send", "tasks:read"], now=T0
    )
    assert re.fullmatch(r"billing-service-[0-9a-f]{8}", client.client_id)
    assert secret.startswith(CLIENT_SECRET_PREFIX)
    assert client.scopes == frozenset({"tasks:submit:email.send", "tasks:read"})
    assert (client.rate_limit, client.max_queued, client.disabled) == ("120/minute", 100, False)
    assert client.created_at == client.secret_rotated_at == T0
    assert await registry.get(client.client_id) == client


async def test_create_stores_the_documented_hash_layout(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """The record is tg:client:{id} with the documented fields; the id is in tg:clients."""
    client, _ = await registry.create("ops", "audit:read", rate_limit="5/second", max_queued=7)
    stored = redis_client.hgetall(f"tg:client:{client.client_id}")
    assert set(stored) == {
        b"name",
        b"secret_hash",
        b"scopes",
        b"rate_limit",
        b"max_queued",
        b"disabled",
        b"created_at",
        b"secret_rotated_at",
        b"generation",
        b"mac",
    }
    assert stored[b"generation"] == b"1"
    assert as_bytes(stored[b"mac"]).startswith(KEYRING_STATE_PREFIX)
    assert stored[b"scopes"] == b"audit:read"
    assert stored[b"rate_limit"] == b"5/second"
    assert stored[b"max_queued"] == b"7"
    assert stored[b"disabled"] == b"0"
    assert redis_client.smembers(CLIENTS_SET) == {client.client_id.encode()}


async def test_secret_is_never_stored_in_plain_text(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """Neither the first nor a rotated secret appears anywhere in Redis; only scrypt hashes do."""
    client, first = await registry.create("app", ["tasks:read"])
    second = await registry.rotate_secret(client.client_id)
    values = _all_values(redis_client)
    for secret in (first, second):
        assert not any(secret.encode() in value for value in values)
        assert not any(secret[len(CLIENT_SECRET_PREFIX) :].encode() in v for v in values)
    stored = redis_client.hget(client_key(client.client_id), "secret_hash")
    assert stored is not None
    assert as_bytes(stored).startswith(b"scrypt$")


async def test_client_repr_holds_no_secret_hash(registry: ClientRegistry) -> None:
    """Client has no secret-hash field, so neither repr nor public() can show one."""
    client, secret = await registry.create("app", ["tasks:read"])
    assert "secret_hash" not in Client.__dataclass_fields__
    assert "scrypt" not in repr(client)
    assert secret not in repr(client)
    assert "scrypt" not in json.dumps(client.public())


async def test_public_view_is_json_ready(registry: ClientRegistry) -> None:
    """public() sorts scopes and renders times as ISO 8601 UTC."""
    client, _ = await registry.create("app", ["tasks:read", "audit:read"], now=T0)
    assert client.public() == {
        "client_id": client.client_id,
        "name": "app",
        "scopes": ["audit:read", "tasks:read"],
        "rate_limit": "120/minute",
        "max_queued": 100,
        "disabled": False,
        "created_at": "2023-11-14T22:13:20Z",
        "secret_rotated_at": "2023-11-14T22:13:20Z",
        "generation": 1,
    }


async def test_ids_of_same_name_differ(registry: ClientRegistry) -> None:
    """Two clients with the same name get distinct ids."""
    a, _ = await registry.create("twin", ["tasks:read"])
    b, _ = await registry.create("twin", ["tasks:read"])
    assert a.client_id != b.client_id


async def test_long_or_odd_name_gives_a_short_slug(registry: ClientRegistry) -> None:
    """The id's slug is lowercase a-z0-9-, at most 32 characters, with no dash at its ends."""
    client, _ = await registry.create("My  App_v2." + "x" * 40, ["tasks:read"])
    slug = client.client_id.rsplit("-", 1)[0]
    assert slug.startswith("my-app-v2-x")
    assert len(slug) <= 32
    assert re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", slug)


async def test_id_collision_picks_another_id(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the random suffix is taken, create draws again instead of overwriting."""
    suffixes = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr("gateway.stores.clients.secrets.token_hex", lambda _n: next(suffixes))
    first, first_secret = await registry.create("dup", ["tasks:read"])
    second, _ = await registry.create("dup", ["tasks:read"])
    assert (first.client_id, second.client_id) == ("dup-aaaaaaaa", "dup-bbbbbbbb")
    assert await registry.authenticate("dup-aaaaaaaa", first_secret) is not None


async def test_create_gives_up_after_repeated_collisions(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endless collisions end in a 'conflict' error, never an overwrite."""
    monkeypatch.setattr("gateway.stores.clients.secrets.token_hex", lambda _n: "cccccccc")
    await registry.create("dup", ["tasks:read"])
    with pytest.raises(ClientError) as info:
        await registry.create("dup", ["tasks:submit:*"])
    assert info.value.reason == "conflict"
    assert (await registry.get("dup-cccccccc")).scopes == {"tasks:read"}  # type: ignore[union-attr]


async def test_get_unknown_client_is_none(registry: ClientRegistry) -> None:
    """An unknown, well-formed id gives None."""
    assert await registry.get("nobody-0123abcd") is None


async def test_list_returns_every_client_oldest_first(registry: ClientRegistry) -> None:
    """list gives all clients ordered by creation time."""
    late, _ = await registry.create("zeta", ["tasks:read"], now=T0 + 10)
    early, _ = await registry.create("alpha", ["tasks:read"], now=T0)
    assert [c.client_id for c in await registry.list()] == [early.client_id, late.client_id]


async def test_list_of_empty_registry_is_empty(registry: ClientRegistry) -> None:
    """With no clients, list is empty."""
    assert await registry.list() == []


async def test_list_skips_stale_and_malformed_ids(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """Ids in tg:clients without a record, or not well formed, are left out."""
    client, _ = await registry.create("real", ["tasks:read"])
    redis_client.sadd(CLIENTS_SET, "gone-0123abcd", "../etc", "a:b")
    assert [c.client_id for c in await registry.list()] == [client.client_id]


# --- disable / enable / rotate ---------------------------------------------------------


async def test_disable_and_enable_round_trip(registry: ClientRegistry) -> None:
    """disable sets the flag (is_disabled sees it), enable clears it."""
    client, _ = await registry.create("app", ["tasks:read"])
    assert await registry.is_disabled(client.client_id) is False
    assert (await registry.disable(client.client_id)).disabled is True
    assert await registry.is_disabled(client.client_id) is True
    assert (await registry.enable(client.client_id)).disabled is False
    assert await registry.is_disabled(client.client_id) is False


@pytest.mark.parametrize("method", ["disable", "enable", "rotate_secret"])
async def test_changing_unknown_client_is_refused_and_creates_nothing(
    registry: ClientRegistry, redis_client: redis.Redis, method: str
) -> None:
    """disable/enable/rotate of an unknown id raise unknown_client and write no key."""
    with pytest.raises(ClientError) as info:
        await getattr(registry, method)("ghost-0123abcd")
    assert info.value.reason == "unknown_client"
    assert "ghost-0123abcd" in str(info.value)
    assert _stored_keys(redis_client) == []


async def test_rotation_replaces_the_secret_at_once(registry: ClientRegistry) -> None:
    """After rotate_secret the old secret fails and the new one works; the time is recorded."""
    client, old = await registry.create("app", ["tasks:read"], now=T0)
    new = await registry.rotate_secret(client.client_id, now=T0 + 60)
    assert new != old
    assert await registry.authenticate(client.client_id, old) is None
    authed = await registry.authenticate(client.client_id, new)
    assert authed is not None
    assert (authed.created_at, authed.secret_rotated_at) == (T0, T0 + 60)


async def test_concurrent_updates_all_land(registry: ClientRegistry) -> None:
    """Racing disable/enable calls retry on WATCH conflicts instead of failing or losing data."""
    client, _ = await registry.create("app", ["tasks:read"])
    ops = [registry.disable, registry.enable] * 5
    await asyncio.gather(*(op(client.client_id) for op in ops))
    assert await registry.get(client.client_id) is not None


async def test_update_retries_after_losing_a_watch_race(
    registry: ClientRegistry,
    async_redis: redis.asyncio.Redis,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write by someone else between WATCH and EXEC makes the update retry, keeping both."""
    client, _ = await registry.create("app", ["tasks:read"])
    other = ClientRegistry(async_redis, registry._keys)
    renamed = dict(await other._load(client.client_id) or {})
    renamed["name"] = "renamed"
    renamed["mac"] = sign_record(
        registry._keys,
        Label.CLIENT,
        client.client_id,
        {n: renamed.get(n) for n in clients_mod.CLIENT_FIELDS},
    )
    real_pipeline = async_redis.pipeline
    interfered: list[KeyT] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_hgetall = pipe.hgetall

        async def hgetall(name: KeyT) -> dict[bytes | str, bytes | str]:
            if not interfered:  # another connection writes the watched key, once
                interfered.append(name)
                mapping: dict[Any, Any] = dict(renamed)  # redis-py's Mapping key is invariant
                redis_client.hset(name, mapping=mapping)  # another gateway's update
            return await real_hgetall(name)

        pipe.hgetall = hgetall  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(async_redis, "pipeline", pipeline)
    updated = await registry.disable(client.client_id)
    assert interfered == [client_key(client.client_id)]
    assert (updated.disabled, updated.name) == (True, "renamed")


async def test_record_vanishing_after_update_is_unknown(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the record is gone when disable reads it back, unknown_client is raised."""

    async def pretend_written(*_args: object, **_kwargs: object) -> bool:
        return True

    monkeypatch.setattr(registry, "_write", pretend_written)
    with pytest.raises(ClientError) as info:
        await registry.disable("ghost-0123abcd")
    assert info.value.reason == "unknown_client"


@pytest.mark.parametrize("method", ["disable", "enable"])
async def test_update_gives_up_when_always_raced(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """If every attempt loses a WATCH race, the update fails with 'conflict'."""
    client, _ = await registry.create("app", ["tasks:read"])

    async def always_raced(*_args: object, **_kwargs: object) -> None:
        return None

    monkeypatch.setattr(registry, "_write", always_raced)
    with pytest.raises(ClientError) as info:
        await getattr(registry, method)(client.client_id)
    assert info.value.reason == "conflict"
