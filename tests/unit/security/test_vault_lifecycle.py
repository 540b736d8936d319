"""Secret references after the task, and through a real Redis.

Listing and deleting references, unwrapping values, vault keys, the errors every failure
raises, and the whole round trip through a real TLS Redis.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
import redis.asyncio
from pydantic import SecretStr

from security import vault
from security.errors import TaskgateError, VaultError
from security.keys import KeySet, Purpose, SymmetricKey
from security.vault import (
    REF_KEY,
    delete_secrets,
    reference_ids,
    resolve_secrets,
    unwrap,
    vault_key,
    write_entries,
)
from tests.support.vault_secrets import CANARY, KEYS, OTHER, OTHER_TASK, TASK, FakeRedis
from tests.support.vault_secrets import assert_no_canary as _assert_no_canary
from tests.support.vault_secrets import resolve as _resolve
from tests.support.vault_secrets import stored as _stored
from tests.support.vault_secrets import swap as _swap
from tests.support.vault_secrets import tamper_ciphertext as _tamper_ciphertext

# --- reference ids, delete, unwrap, keys -----------------------------------------------


def test_reference_ids_lists_each_reference_once_in_order() -> None:
    """Ids come out in payload order without repeats; no reference gives []."""
    a, b = "a" * 22, "b" * 22
    payload = {"x": {REF_KEY: a}, "y": [{REF_KEY: b}, {REF_KEY: a}]}
    assert reference_ids(payload) == [a, b]
    assert reference_ids({"x": 1}) == []


def test_reference_ids_refuses_a_malformed_reference() -> None:
    """A malformed reference is an error, not silently ignored."""
    with pytest.raises(VaultError):
        reference_ids({"x": {REF_KEY: "nope"}})


def test_delete_secrets_by_ids_and_by_payload_in_one_call() -> None:
    """Deleting takes ids or the swapped payload, issues one DEL, and counts what existed."""
    result = _swap({"a": CANARY, "b": OTHER}, "a", "b")
    fake = _stored(result)
    assert delete_secrets(fake, TASK, list(result.ref_ids[:1])) == 1  # type: ignore[arg-type]
    assert delete_secrets(fake, TASK, result.payload) == 1  # type: ignore[arg-type]
    assert fake.data == {}
    assert len(fake.delete_calls) == 2
    assert delete_secrets(fake, TASK, result.payload) == 0  # type: ignore[arg-type]


def test_delete_secrets_with_nothing_to_delete_makes_no_call() -> None:
    """No references, no round trip."""
    fake = FakeRedis()
    assert delete_secrets(fake, TASK, {"a": 1}) == 0  # type: ignore[arg-type]
    assert delete_secrets(fake, TASK, []) == 0  # type: ignore[arg-type]
    assert fake.delete_calls == []


def test_delete_secrets_refuses_malformed_ids() -> None:
    """Ids become key names: anything but a reference id is refused before any I/O."""
    fake = FakeRedis()
    with pytest.raises(VaultError) as info:
        delete_secrets(fake, TASK, ["*"])  # type: ignore[arg-type]
    assert info.value.reason == "malformed_reference"
    with pytest.raises(VaultError):
        delete_secrets(fake, "a:*", ["A" * 22])  # type: ignore[arg-type]
    assert fake.delete_calls == []


def test_unwrap_turns_secretstr_back_into_plain_values() -> None:
    """unwrap copies nested structures and reveals SecretStr only where called."""
    value = {"a": SecretStr(CANARY), "b": [SecretStr(OTHER), 1], "c": (2,), "d": "x"}
    assert unwrap(value) == {"a": CANARY, "b": [OTHER, 1], "c": [2], "d": "x"}


def test_vault_key_validates_its_parts() -> None:
    """The key shape is fixed and both parts are validated."""
    assert vault_key(TASK, "A" * 22) == f"tg:vault:{TASK}:{'A' * 22}"
    with pytest.raises(VaultError):
        vault_key(TASK, "A" * 23)


def test_every_vault_failure_is_a_taskgate_error_without_the_value() -> None:
    """Errors raised on the way carry no value in message, args or reason."""
    result = _swap({"pw": CANARY}, "pw")
    failures: list[TaskgateError] = []
    for task_id in (OTHER_TASK, TASK):
        fake = FakeRedis()
        fake.data[vault_key(task_id, result.ref_ids[0])] = _tamper_ciphertext(
            result.entries[0].blob
        )
        try:
            _resolve(result.payload, fake, task_id=task_id)
        except TaskgateError as exc:
            failures.append(exc)
    assert len(failures) == 2
    for failure in failures:
        _assert_no_canary(failure, failure.args, failure.message, failure.reason)


# --- real Redis ------------------------------------------------------------------------


@pytest.mark.integration
def test_round_trip_through_real_redis_with_one_pipeline(redis_client: redis.Redis) -> None:
    """Gateway pipelines the SETs with a TTL; worker resolves; delete removes them for good."""
    result = _swap(
        {"smtp": {"password": CANARY}, "api": {"key": OTHER}}, "smtp.password", "api.key"
    )
    pipe = redis_client.pipeline(transaction=False)
    write_entries(pipe, result.entries, 120)
    assert pipe.execute() == [True, True]
    for entry in result.entries:
        assert 0 < redis_client.ttl(entry.redis_key) <= 120
        assert CANARY.encode() not in redis_client.get(entry.redis_key)  # type: ignore[operator]

    resolved = resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert resolved["smtp"]["password"].get_secret_value() == CANARY
    assert resolved["api"]["key"].get_secret_value() == OTHER

    assert delete_secrets(redis_client, TASK, result.payload) == 2
    with pytest.raises(VaultError) as info:
        resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert info.value.reason == "secret_unavailable"


@pytest.mark.integration
def test_real_redis_blob_copied_to_another_task_is_refused(redis_client: redis.Redis) -> None:
    """Someone with write access to Redis cannot hand a secret to another task."""
    result = _swap({"pw": CANARY}, "pw")
    write_entries(redis_client, result.entries, 60)
    redis_client.copy(result.entries[0].redis_key, vault_key(OTHER_TASK, result.ref_ids[0]))
    with pytest.raises(VaultError) as info:
        resolve_secrets(result.payload, task_id=OTHER_TASK, keys=KEYS, client=redis_client)
    assert info.value.reason == "binding_mismatch"


@pytest.mark.integration
async def test_async_pipeline_writes_what_the_sync_worker_resolves(
    async_redis: redis.asyncio.Redis, redis_client: redis.Redis
) -> None:
    """The gateway's asyncio pipeline and the worker's sync client agree on the format."""
    result = _swap({"pw": CANARY}, "pw")
    async with async_redis.pipeline(transaction=False) as pipe:
        write_entries(pipe, result.entries, 60)
        assert await pipe.execute() == [True]
    resolved = resolve_secrets(result.payload, task_id=TASK, keys=KEYS, client=redis_client)
    assert resolved["pw"].get_secret_value() == CANARY


def test_prefetched_blobs_resolve_without_asking_redis() -> None:
    """With ``blobs`` given, no MGET is sent and a missing blob is 'secret_unavailable'."""
    keys = KeySet(Purpose.VAULT, [SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32))])
    swapped = vault.swap_secrets({"pw": "hunter2-x"}, ["pw"], task_id="t-1", keys=keys)

    class NoRedis:
        def mget(self, *_: object) -> list[bytes]:
            raise AssertionError("MGET must not be sent")

    blobs = {e.redis_key: e.blob for e in swapped.entries}
    client: Any = NoRedis()
    out = vault.resolve_secrets(
        swapped.payload, task_id="t-1", keys=keys, client=client, blobs=blobs
    )
    assert isinstance(out["pw"], SecretStr)
    assert out["pw"].get_secret_value() == "hunter2-x"
    with pytest.raises(VaultError) as caught:
        vault.resolve_secrets(swapped.payload, task_id="t-1", keys=keys, client=client, blobs={})
    assert caught.value.reason == "secret_unavailable"
