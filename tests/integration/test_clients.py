"""The client registry (gateway.stores.clients) and `taskgate clients` against the real TLS
Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.typing import KeyT
from typer.testing import CliRunner

import gateway.stores.clients as clients_mod
from gateway.stores.clients import (
    CLIENTS_SET,
    Client,
    ClientError,
    ClientRegistry,
    client_key,
    scope_allows,
    validate_scopes,
)
from security.errors import StoredStateError
from security.keys import KeySet, Purpose, SymmetricKey
from security.keystore import KeyRing
from security.passwords import CLIENT_SECRET_PREFIX, verify_against_dummy, verify_client_secret
from security.stored_state import Label, sign_record
from taskgate.cli.clients import app
from taskgate.devstack.procs import free_port
from tests.support.replies import as_bytes, as_text
from workers.contract.keys import AUDIT_STREAM, WORKERS

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
KEYRING_STATE_PREFIX = b"state-"  # a tag names its state key: <kid>:<mac>
KEYS = KeySet(Purpose.STATE, [SymmetricKey("state-test", Purpose.STATE, b"\x07" * 32)])


@pytest.fixture
def registry(async_redis: redis.asyncio.Redis, keyring: KeyRing) -> ClientRegistry:
    """A registry over the flushed test database."""
    return ClientRegistry(async_redis, keyring.state)


class _NoRedis:
    """Stands in for Redis where no call may happen: any attribute access fails the test."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"Redis was used ({name}) for a malformed client id")


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


# --- authenticate ----------------------------------------------------------------------


async def test_authenticate_with_right_secret_gives_the_client(registry: ClientRegistry) -> None:
    """The right secret of an enabled client authenticates."""
    client, secret = await registry.create("app", ["tasks:read"])
    assert await registry.authenticate(client.client_id, secret) == client


async def test_authenticate_with_wrong_secret_is_none(registry: ClientRegistry) -> None:
    """A wrong secret (or another client's) gives None."""
    client, _ = await registry.create("app", ["tasks:read"])
    _, other_secret = await registry.create("other", ["tasks:read"])
    assert await registry.authenticate(client.client_id, other_secret) is None
    assert await registry.authenticate(client.client_id, "tgs_" + "x" * 43) is None


async def test_authenticate_unknown_id_pays_the_dummy_check(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown id gives None after a dummy scrypt check (same time as a wrong secret)."""
    calls: list[str] = []

    def spy(secret: str) -> bool:
        calls.append(secret)
        return verify_against_dummy(secret)

    monkeypatch.setattr(clients_mod, "verify_against_dummy", spy)
    assert await registry.authenticate("nobody-0123abcd", "tgs_guess") is None
    assert calls == ["tgs_guess"]


async def test_authenticate_disabled_client_checks_the_hash_then_refuses(
    registry: ClientRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disabled client with the right secret gets None, after the real hash check ran."""
    client, secret = await registry.create("app", ["tasks:read"])
    await registry.disable(client.client_id)
    calls: list[bool] = []

    def spy(presented: str, encoded: str) -> bool:
        calls.append(result := verify_client_secret(presented, encoded))
        return result

    monkeypatch.setattr(clients_mod, "verify_client_secret", spy)
    assert await registry.authenticate(client.client_id, secret) is None
    assert calls == [True]
    await registry.enable(client.client_id)
    assert await registry.authenticate(client.client_id, secret) is not None


async def test_record_without_secret_hash_never_authenticates(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """A record whose secret hash was deleted fails its MAC: refused, never authenticated."""
    client, secret = await registry.create("app", ["tasks:read"])
    redis_client.hdel(client_key(client.client_id), "secret_hash")
    with pytest.raises(StoredStateError) as info:
        await registry.authenticate(client.client_id, secret)
    assert info.value.reason == "bad_mac"


async def test_malformed_stored_hash_is_a_loud_config_error(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """A stored hash replaced in Redis is refused by the MAC before it is ever parsed."""
    client, secret = await registry.create("app", ["tasks:read"])
    redis_client.hset(client_key(client.client_id), "secret_hash", "plain:oops")
    with pytest.raises(StoredStateError):
        await registry.authenticate(client.client_id, secret)


# --- malformed ids never reach Redis ---------------------------------------------------

BAD_IDS = [
    "../x",
    "a:b",
    "tg:clients",
    "",
    "x-0123abc",
    "x-0123abcg",
    "X-0123abcd",
    "-0123abcd",
    "x-0123abcd\n",
    "x-0123abcd:y",
    "a" * 33 + "-0123abcd",
]


@pytest.mark.parametrize("client_id", BAD_IDS)
async def test_malformed_id_never_reaches_redis(client_id: str) -> None:
    """Every method refuses a malformed id without a single Redis call."""
    registry = ClientRegistry(_NoRedis(), KEYS)  # type: ignore[arg-type]
    assert await registry.get(client_id) is None
    assert await registry.authenticate(client_id, "tgs_guess") is None
    assert await registry.is_disabled(client_id) is True
    for method in (registry.disable, registry.enable, registry.rotate_secret):
        with pytest.raises(ClientError) as info:
            await method(client_id)
        assert info.value.reason == "unknown_client"
        assert "(malformed id)" in str(info.value)
    with pytest.raises(ClientError):
        client_key(client_id)


async def test_non_string_id_is_refused_without_redis() -> None:
    """A non-string id is malformed too."""
    registry = ClientRegistry(_NoRedis(), KEYS)  # type: ignore[arg-type]
    assert await registry.get(123) is None  # type: ignore[arg-type]
    assert await registry.is_disabled(None) is True  # type: ignore[arg-type]


# --- corrupt records -------------------------------------------------------------------


async def test_is_disabled_fails_closed(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """Unknown clients and a record whose flag was changed in Redis count as disabled."""
    assert await registry.is_disabled("ghost-0123abcd") is True
    client, _ = await registry.create("app", ["tasks:read"])
    redis_client.hset(client_key(client.client_id), "disabled", "no")
    assert await registry.is_disabled(client.client_id) is True
    with pytest.raises(StoredStateError):
        await registry.get(client.client_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_queued", "lots"), ("created_at", "yesterday"), ("name", None), ("scopes", b"\xff")],
)
async def test_corrupt_record_is_reported(
    registry: ClientRegistry, redis_client: redis.Redis, field: str, value: object
) -> None:
    """A record with a missing, non-numeric or non-UTF-8 field is refused: corrupt_record
    (not UTF-8) or its MAC fails (anything else), never used."""
    client, _ = await registry.create("app", ["tasks:read"])
    key = client_key(client.client_id)
    if value is None:
        redis_client.hdel(key, field)
    else:
        redis_client.hset(key, field, value)  # type: ignore[arg-type]
    with pytest.raises((ClientError, StoredStateError)) as info:
        await registry.get(client.client_id)
    assert info.value.reason in {"corrupt_record", "bad_mac"}


async def test_registry_works_with_decoded_responses(tls_redis: Any, keyring: KeyRing) -> None:
    """A client with decode_responses=True reads the same records."""
    client = tls_redis.tls.async_client(decode_responses=True)
    try:
        await client.flushdb()
        registry = ClientRegistry(client, keyring.state)
        created, secret = await registry.create("app", ["tasks:read"])
        assert await registry.list() == [created]
        assert await registry.authenticate(created.client_id, secret) == created
        assert await registry.is_disabled(created.client_id) is False
    finally:
        await client.aclose()


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scopes",
    [
        [],
        "",
        ["tasks:submit:"],
        ["tasks:submit:Email"],
        ["tasks:submit:" + "a" * 101],
        ["tasks:submit:a/b"],
        ["tasks:submit:**"],
        ["tasks:write"],
        ["admin"],
        ["tasks:read "],
        ["audit:read", "audit:write"],
        [42],
        ["tasks:read"] * 257,
    ],
)
async def test_bad_scopes_are_refused(registry: ClientRegistry, scopes: Any) -> None:
    """Anything outside the scope grammar, or no scope at all, is refused with bad_scope."""
    with pytest.raises(ClientError) as info:
        await registry.create("app", scopes)
    assert info.value.reason == "bad_scope"


def test_good_scopes_are_accepted() -> None:
    """Every form of the grammar passes; a string is split on whitespace."""
    assert validate_scopes("tasks:read  audit:read\ttasks:submit:*") == {
        "tasks:read",
        "audit:read",
        "tasks:submit:*",
    }
    assert validate_scopes(["tasks:submit:" + "a" * 100, "tasks:submit:img.resize_v-2"])


@pytest.mark.parametrize(
    "name", ["", " app", "-app", "a" * 65, "naïve", "x\ny", "a/b", "a:b", "<script>", 7]
)
async def test_bad_names_are_refused(registry: ClientRegistry, name: Any) -> None:
    """Names outside 1-64 printable ASCII letters, digits, space . _ - are refused."""
    with pytest.raises(ClientError) as info:
        await registry.create(name, ["tasks:read"])
    assert info.value.reason == "bad_name"


@pytest.mark.parametrize(
    "rate_limit",
    [
        "",
        "abc",
        "0/minute",
        "1000001/second",
        "1/minute;2/second",
        "5/second, 6/hour",
        "1/fortnight",
        "1" * 60 + "/minute",
        120,
    ],
)
async def test_bad_rate_limits_are_refused(registry: ClientRegistry, rate_limit: Any) -> None:
    """A rate limit must be exactly one positive limit the limits package parses."""
    with pytest.raises(ClientError) as info:
        await registry.create("app", ["tasks:read"], rate_limit=rate_limit)
    assert info.value.reason == "bad_limit"


@pytest.mark.parametrize(
    ("given", "stored"),
    [("120 per minute", "120/minute"), ("10/2 minutes", "10/2 minutes"), (" 5/hour ", "5/hour")],
)
async def test_rate_limit_is_stored_canonical(
    registry: ClientRegistry, given: str, stored: str
) -> None:
    """Accepted rate limits are stored in one canonical form."""
    client, _ = await registry.create("app", ["tasks:read"], rate_limit=given)
    assert client.rate_limit == stored
    assert (await registry.get(client.client_id)).rate_limit == stored  # type: ignore[union-attr]


@pytest.mark.parametrize("max_queued", [0, -1, 100_001, True, "5", 1.5])
async def test_bad_max_queued_is_refused(registry: ClientRegistry, max_queued: Any) -> None:
    """max_queued must be an int in 1..100000."""
    with pytest.raises(ClientError) as info:
        await registry.create("app", ["tasks:read"], max_queued=max_queued)
    assert info.value.reason == "bad_limit"


async def test_max_queued_bounds_are_accepted(registry: ClientRegistry) -> None:
    """1 and 100000 are both allowed."""
    low, _ = await registry.create("low", ["tasks:read"], max_queued=1)
    high, _ = await registry.create("high", ["tasks:read"], max_queued=100_000)
    assert (low.max_queued, high.max_queued) == (1, 100_000)


async def test_refused_create_writes_nothing(
    registry: ClientRegistry, redis_client: redis.Redis
) -> None:
    """A refused create leaves Redis untouched."""
    with pytest.raises(ClientError):
        await registry.create("app", ["root"])
    assert _stored_keys(redis_client) == []


# --- scope_allows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        (["tasks:submit:email.send"], "tasks:submit:email.send", True),
        (["tasks:submit:email.send"], "tasks:submit:report", False),
        (["tasks:submit:*"], "tasks:submit:report", True),
        (["tasks:submit:*"], "tasks:submit:*", True),
        (["tasks:submit:report"], "tasks:submit:*", False),
        (["tasks:submit:*"], "tasks:read", False),
        (["tasks:submit:*"], "audit:read", False),
        (["tasks:read"], "tasks:read", True),
        (["audit:read"], "audit:read", True),
        (["tasks:read"], "audit:read", False),
        ([], "tasks:read", False),
        (["tasks:submit:*"], "tasks:submit:", False),
        (["tasks:submit:*"], "tasks:submit:Bad Name", False),
        (["tasks:submit:*"], "tasks:submit:../x", False),
        (["tasks:*"], "tasks:read", False),
        (["*"], "tasks:read", False),
        (["admin"], "admin", False),
        ([None, 3, "tasks:read"], "tasks:read", True),
        (["tasks:read"], None, False),
        (frozenset({"tasks:submit:*"}), "tasks:submit:x", True),
    ],
)
def test_scope_allows(granted: Any, needed: Any, allowed: bool) -> None:
    """Exact scopes match; tasks:submit:* covers any task submission and nothing else."""
    assert scope_allows(granted, needed) is allowed


# --- CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    stack_env: dict[str, str],
    redis_client: redis.Redis,
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> redis.Redis:
    """TASKGATE_* from the session stack, the CLI acting as the bootstrap operator
    ``admin``; the database flushed; returns a sync client."""
    for name in list(os.environ):
        if name.startswith("TASKGATE_"):
            monkeypatch.delenv(name)
    for name, value in stack_env.items():
        if name.startswith("TASKGATE_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TASKGATE_OPERATOR_TOKEN", admin_token)
    return redis_client


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _stored_keys(client: redis.Redis) -> list[bytes]:
    """Every key in Redis except the heartbeats the session's running worker keeps writing
    and the audit log (a refused command is audited)."""
    keys = [as_bytes(key) for key in client.keys("*")]
    return [
        key for key in keys if key != WORKERS.encode() and not key.startswith(AUDIT_STREAM.encode())
    ]


def _stored_hash(client: redis.Redis, client_id: str) -> str:
    value = client.hget(client_key(client_id), "secret_hash")
    assert value is not None
    return as_text(value)


def test_cli_add_json_prints_id_secret_scopes_once(cli_env: redis.Redis) -> None:
    """add --json prints exactly client_id, client_secret, scopes; the secret verifies."""
    result = _cli("add", "Billing", "--scopes", "tasks:read tasks:submit:test.touch", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"client_id", "client_secret", "scopes"}
    assert out["scopes"] == ["tasks:read", "tasks:submit:test.touch"]
    assert out["client_id"].startswith("billing-")
    assert verify_client_secret(out["client_secret"], _stored_hash(cli_env, out["client_id"]))
    assert result.stdout.count(out["client_secret"]) == 1


def test_cli_add_text_warns_the_secret_is_shown_once(cli_env: redis.Redis) -> None:
    """The text form prints id, secret and scopes, and warns the secret will not be shown again."""
    result = _cli(
        "add", "app", "--scope", "tasks:read", "--scope", "audit:read", "--rate-limit", "5/second"
    )
    assert result.exit_code == 0, result.output
    assert "client_id:" in result.stdout
    assert "client_secret: tgs_" in result.stdout
    assert "scopes:        audit:read tasks:read" in result.stdout
    assert "shown only this once" in result.stderr
    (member,) = cli_env.smembers(CLIENTS_SET)
    assert cli_env.hget(client_key(as_text(member)), "rate_limit") == b"5/second"


def test_cli_add_combines_scopes_and_scope(cli_env: redis.Redis) -> None:
    """--scopes and repeated --scope add up."""
    result = _cli("add", "app", "--scopes", "tasks:read", "--scope", "audit:read", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scopes"] == ["audit:read", "tasks:read"]


@pytest.mark.parametrize(
    "args",
    [
        ["add", "app", "--scopes", "root"],
        ["add", "app"],
        ["add", "../app", "--scopes", "tasks:read"],
        ["add", "app", "--scopes", "tasks:read", "--rate-limit", "lots"],
        ["add", "app", "--scopes", "tasks:read", "--max-queued", "0"],
    ],
)
def test_cli_add_refuses_bad_input(cli_env: redis.Redis, args: list[str]) -> None:
    """Bad scopes, names or limits exit 1 with a message, and nothing is stored."""
    result = _cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("taskgate clients: ")
    assert _stored_keys(cli_env) == []


def test_cli_list_never_shows_secrets(cli_env: redis.Redis) -> None:
    """list (text and JSON) shows the clients but no secret and no hash."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    as_json = _cli("list", "--json")
    as_text = _cli("list")
    assert as_json.exit_code == as_text.exit_code == 0
    (row,) = json.loads(as_json.stdout)
    assert row["client_id"] == added["client_id"]
    assert row["scopes"] == ["tasks:read"]
    assert added["client_id"] in as_text.stdout
    assert "enabled" in as_text.stdout
    for output in (as_json.output, as_text.output):
        assert added["client_secret"] not in output
        assert "scrypt" not in output
        assert "secret_hash" not in output


def test_cli_list_empty(cli_env: redis.Redis) -> None:
    """With no clients, list says so (and --json prints [])."""
    assert "no clients registered" in _cli("list").stdout
    assert json.loads(_cli("list", "--json").stdout) == []


def test_cli_disable_and_enable(cli_env: redis.Redis) -> None:
    """disable and enable flip the stored flag."""
    client_id = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)[
        "client_id"
    ]
    result = _cli("disable", client_id)
    assert (result.exit_code, result.stdout) == (0, f"disabled {client_id}\n")
    assert cli_env.hget(client_key(client_id), "disabled") == b"1"
    assert "disabled" in _cli("list").stdout
    result = _cli("enable", client_id)
    assert (result.exit_code, result.stdout) == (0, f"enabled {client_id}\n")
    assert cli_env.hget(client_key(client_id), "disabled") == b"0"


@pytest.mark.parametrize("command", ["disable", "enable", "rotate-secret"])
@pytest.mark.parametrize(
    ("client_id", "shown"), [("ghost-0123abcd", "ghost-0123abcd"), ("../x", "(malformed id)")]
)
def test_cli_unknown_client_exits_1(
    cli_env: redis.Redis, command: str, client_id: str, shown: str
) -> None:
    """An unknown or malformed id exits 1 with a clear message and writes nothing."""
    result = _cli(command, client_id)
    assert result.exit_code == 1
    assert result.stderr == f"taskgate clients: no client {shown}\n"
    assert _stored_keys(cli_env) == []


def test_cli_rotate_secret_json(cli_env: redis.Redis) -> None:
    """rotate-secret --json prints the new secret; the old one no longer verifies."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    result = _cli("rotate-secret", added["client_id"], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"client_id", "client_secret"}
    stored = _stored_hash(cli_env, added["client_id"])
    assert verify_client_secret(out["client_secret"], stored)
    assert not verify_client_secret(added["client_secret"], stored)


def test_cli_rotate_secret_text_warns(cli_env: redis.Redis) -> None:
    """rotate-secret in text form prints the secret with the shown-once warning."""
    added = json.loads(_cli("add", "app", "--scopes", "tasks:read", "--json").stdout)
    result = _cli("rotate-secret", added["client_id"])
    assert result.exit_code == 0, result.output
    assert f"client_id:     {added['client_id']}" in result.stdout
    assert "client_secret: tgs_" in result.stdout
    assert "scopes:" not in result.stdout
    assert "shown only this once" in result.stderr


def test_cli_refuses_unsafe_settings_with_exit_2(
    cli_env: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain redis:// URL is refused before anything runs: one line, exit 2."""
    monkeypatch.setenv("TASKGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = _cli("list")
    assert result.exit_code == 2
    assert result.stderr.startswith("taskgate clients: refused: TASKGATE_REDIS_URL")


def test_cli_unreachable_redis_exits_1(
    cli_env: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis down the CLI says so and exits 1 (no traceback)."""
    monkeypatch.setenv("TASKGATE_REDIS_URL", f"rediss://localhost:{free_port()}/0")
    result = _cli("list")
    assert result.exit_code == 1
    assert "cannot use Redis (ConnectionError)" in result.stderr
