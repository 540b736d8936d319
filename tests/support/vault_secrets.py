"""Secrets for the vault's tests: canaries, task ids, a vault key ring, a stand-in client.

``FakeRedis`` is just enough of a client for the pure tests (it counts round trips); the
vault's round trips through a real Redis are tested in ``test_vault_lifecycle``.
"""

from __future__ import annotations

import os
from typing import Any

from security.keys import KeySet, Purpose, SymmetricKey
from security.vault import SwapResult, resolve_secrets, swap_secrets

CANARY = "canary-" + "Zq7hunter2-do-not-log"
OTHER = "other-" + "Wv4correct-horse"
TASK = "0b6f6a5e-7f1c-4c1e-9d1a-2b3c4d5e6f70"
OTHER_TASK = "9c7e1d2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
OLD = SymmetricKey("vault-1", Purpose.VAULT, os.urandom(32))
NEW = SymmetricKey("vault-2", Purpose.VAULT, os.urandom(32))
KEYS = KeySet(Purpose.VAULT, [OLD, NEW])


class FakeRedis:
    """Just enough of ``redis.Redis`` for the pure tests; counts round trips."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, int] = {}
        self.mget_calls: list[list[str]] = []
        self.delete_calls: list[tuple[str, ...]] = []

    def mget(self, keys: list[str]) -> list[Any]:
        self.mget_calls.append(list(keys))
        return [self.data.get(k) for k in keys]

    def delete(self, *keys: str) -> int:
        self.delete_calls.append(keys)
        return sum(self.data.pop(k, None) is not None for k in keys)

    def set(self, name: str, value: bytes, *, ex: int) -> object:
        self.data[name] = value
        self.ttls[name] = ex
        return True


def stored(result: SwapResult) -> FakeRedis:
    """A ``FakeRedis`` holding the entries of ``result``."""
    fake = FakeRedis()
    for entry in result.entries:
        fake.set(entry.redis_key, entry.blob, ex=60)
    return fake


def resolve(payload: Any, fake: FakeRedis, *, task_id: str = TASK, keys: Any = KEYS) -> Any:
    """Resolve ``payload``'s references for ``task_id`` from ``fake``."""
    return resolve_secrets(payload, task_id=task_id, keys=keys, client=fake)  # type: ignore[arg-type]


def swap(payload: dict[str, Any], *paths: str, task_id: str = TASK, keys: Any = KEYS) -> SwapResult:
    """Swap the secrets at ``paths`` of ``payload`` for references of ``task_id``."""
    return swap_secrets(payload, paths, task_id=task_id, keys=keys)


def assert_no_canary(*things: object) -> None:
    """Check that neither ``str`` nor ``repr`` of any of ``things`` shows ``CANARY``."""
    for thing in things:
        assert CANARY not in str(thing)
        assert CANARY not in repr(thing)


def tamper_ciphertext(blob: bytes) -> bytes:
    """``blob`` with one bit of its last byte flipped."""
    return blob[:-1] + bytes([blob[-1] ^ 1])
