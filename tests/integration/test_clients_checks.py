"""The client registry (gateway.stores.clients) against the real TLS Redis: its checks.

Authenticating a client, malformed ids that never reach Redis, corrupt records, the
scopes, names and limits a client is created with, and what a scope allows.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio

import gateway.stores.clients as clients_mod
from gateway.stores.clients import (
    ClientError,
    ClientRegistry,
    client_key,
    scope_allows,
    validate_scopes,
)
from security.errors import StoredStateError
from security.keys import KeySet, Purpose, SymmetricKey
from security.keystore import KeyRing
from security.passwords import verify_against_dummy, verify_client_secret
from tests.support.stored_keys import stored_keys as _stored_keys

pytestmark = pytest.mark.integration
KEYS = KeySet(Purpose.STATE, [SymmetricKey("state-test", Purpose.STATE, b"\x07" * 32)])


class _NoRedis:
    """Stands in for Redis where no call may happen: any attribute access fails the test."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"Redis was used ({name}) for a malformed client id")


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
