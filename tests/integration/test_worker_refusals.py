"""A worker runs only what the gateway sealed and signed for exactly that task.

Refused by the worker's main process (a body that is not a sealed envelope) or by the pool
process that opens the envelope before anything runs (signature, key, expiry, binding).
Every refused message: the body never runs, the message is acknowledged or rejected
without requeue (no redelivery loop), and the refusal is audited with its reason.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.keystore import KeyRing
from security.sealing import seal
from taskgate.devstack.procs import Child
from tests.support.messages import push_raw, ran, submit, wait_audit, wait_result
from workers.contract.wire import DEFAULT_QUEUE, done_key

pytestmark = pytest.mark.integration

NAME = "test.touch"


@pytest.fixture
def side_effects(session_dir: Path) -> Path:
    return session_dir / "side-effects"


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps([[], {"payload": payload}, {}]).encode()


def _message(task_id: str, name: str, body: bytes, content_type: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(
        encode_message(OutgoingTask(task_id, name, body, content_type, DEFAULT_QUEUE))
    )
    return message


def _unsealed_json(keys: KeyRing, task_id: str) -> dict[str, Any]:
    return _message(task_id, NAME, _body({"note": "x"}), "application/json")


def _pickle(keys: KeyRing, task_id: str) -> dict[str, Any]:
    return _message(task_id, NAME, b"\x80\x04K\x01.", "application/x-python-serialize")


def _sealed(
    keys: KeyRing,
    task_id: str,
    *,
    name: str = NAME,
    signer: SigningKey | None = None,
    broker: KeySet[SymmetricKey] | None = None,
    now: float | None = None,
    unsigned: bool = False,
) -> bytes:
    return seal(
        _body({"note": "x"}),
        task_id=task_id,
        task_name=name,
        keys=broker or keys.broker,
        signer=None if unsigned else (signer or keys.signing.current()),
        ttl=60,
        now=now,
    )


def _sealed_type_not_an_envelope(keys: KeyRing, task_id: str) -> dict[str, Any]:
    return _message(task_id, NAME, _body({"note": "x"}), SealedCodec.content_type)


def _unsigned(keys: KeyRing, task_id: str) -> dict[str, Any]:
    return _message(task_id, NAME, _sealed(keys, task_id, unsigned=True), SealedCodec.content_type)


def _foreign_signer(keys: KeyRing, task_id: str) -> dict[str, Any]:
    private = Ed25519PrivateKey.generate()
    impostor = SigningKey(keys.signing.current().kid, private.public_key(), private)
    return _message(
        task_id, NAME, _sealed(keys, task_id, signer=impostor), SealedCodec.content_type
    )


def _unknown_broker_key(keys: KeyRing, task_id: str) -> dict[str, Any]:
    other = KeySet(Purpose.BROKER, [SymmetricKey("broker-unknown", Purpose.BROKER, os.urandom(32))])
    return _message(task_id, NAME, _sealed(keys, task_id, broker=other), SealedCodec.content_type)


def _tampered(keys: KeyRing, task_id: str) -> dict[str, Any]:
    envelope = bytearray(_sealed(keys, task_id))
    middle = envelope.index(b".", 4) + 5  # a byte inside the ciphertext segment
    envelope[middle] = ord("A") if envelope[middle] != ord("A") else ord("B")
    return _message(task_id, NAME, bytes(envelope), SealedCodec.content_type)


def _expired(keys: KeyRing, task_id: str) -> dict[str, Any]:
    stale = _sealed(keys, task_id, now=time.time() - 3600)
    return _message(task_id, NAME, stale, SealedCodec.content_type)


def _moved_to_other_id(keys: KeyRing, task_id: str) -> dict[str, Any]:
    original = str(uuid.uuid4())
    return _message(task_id, NAME, _sealed(keys, original), SealedCodec.content_type)


def _moved_to_other_name(keys: KeyRing, task_id: str) -> dict[str, Any]:
    return _message(
        task_id, NAME, _sealed(keys, task_id, name="test.other"), SealedCodec.content_type
    )


CASES: list[tuple[str, Callable[[KeyRing, str], dict[str, Any]], str]] = [
    ("unsealed-json", _unsealed_json, "not_sealed"),
    ("pickle", _pickle, "not_sealed"),
    ("sealed-type-not-an-envelope", _sealed_type_not_an_envelope, "not_sealed"),
    ("not-signed", _unsigned, "missing_signature"),
    ("signed-by-another-key", _foreign_signer, "bad_signature"),
    ("unknown-broker-key", _unknown_broker_key, "unknown_kid"),
    ("tampered", _tampered, "bad_ciphertext"),  # the AEAD tag is checked first in the pool
    ("expired", _expired, "expired"),
    ("task-id-changed", _moved_to_other_id, "task_id_mismatch"),
    ("task-name-changed", _moved_to_other_name, "task_name_mismatch"),
]


@pytest.mark.parametrize(
    ("make", "reason"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_message_never_runs_is_acked_and_audited(
    make: Callable[[KeyRing, str], dict[str, Any]],
    reason: str,
    celery_worker: Child,
    redis_client: redis.Redis,
    keyring: KeyRing,
    side_effects: Path,
) -> None:
    """The worker refuses the message: no side effect, nothing left to redeliver, audited."""
    task_id = str(uuid.uuid4())
    push_raw(redis_client, make(keyring, task_id))
    entry = wait_audit(redis_client, task_id, "task.refused")
    assert entry.record.outcome == "denied"
    assert entry.record.reason == reason
    time.sleep(0.3)
    assert not ran(side_effects, task_id)
    assert redis_client.llen(DEFAULT_QUEUE) == 0
    assert redis_client.hlen("unacked") == 0


def test_a_forgery_refused_after_the_start_gate_leaves_the_worker_whole(
    celery_worker: Child,
    redis_client: redis.Redis,
    keyring: KeyRing,
    side_effects: Path,
) -> None:
    """Envelopes only a broker-key holder can make (they decrypt) but signed by another key
    pass the AEAD check, so the start gate goes out; the signature check then refuses them.
    None runs or leaves a completion record, each refusal is audited, and both
    pool processes' Redis connections stay in step: proper tasks sent next run with their
    secrets."""
    forged = [str(uuid.uuid4()) for _ in range(4)]
    for task_id in forged:
        push_raw(redis_client, _foreign_signer(keyring, task_id))
    reasons = [wait_audit(redis_client, t, "task.refused").record.reason for t in forged]
    proper = [
        submit(
            redis_client,
            keyring,
            NAME,
            {"note": f"after {n}", "token": "s3cr3t-value"},
            secret_fields=("token",),
        )
        for n in range(4)
    ]
    results = [wait_result(redis_client, keyring, task_id) for task_id in proper]
    assert reasons == ["bad_signature"] * 4
    assert [doc["status"] for doc in results] == ["SUCCESS"] * 4
    assert all(ran(side_effects, task_id) for task_id in proper)
    assert not any(ran(side_effects, task_id) for task_id in forged)
    for task_id in forged:
        assert not redis_client.exists(done_key(task_id))
    assert redis_client.hlen("unacked") == 0


def test_sealed_message_for_this_task_runs_with_its_secret(
    celery_worker: Child, redis_client: redis.Redis, keyring: KeyRing, side_effects: Path
) -> None:
    """The control case: a proper gateway message runs once and receives the secret wrapped."""
    import hashlib

    task_id = submit(
        redis_client,
        keyring,
        NAME,
        {"note": "hello", "token": "s3cr3t-value"},
        secret_fields=("token",),
    )
    doc = wait_result(redis_client, keyring, task_id)
    assert doc["status"] == "SUCCESS"
    assert doc["result"]["token_sha256"] == hashlib.sha256(b"s3cr3t-value").hexdigest()
    assert "s3cr3t" not in doc["result"]["token_repr"]
    assert (side_effects / task_id).read_text() == "ran 5\n"
    assert redis_client.keys(f"tg:vault:{task_id}:*") == []  # deleted once finished for good


def test_result_in_the_backend_is_sealed(
    celery_worker: Child, redis_client: redis.Redis, keyring: KeyRing
) -> None:
    """What Redis holds for a result is an envelope, not JSON with the result in it."""
    task_id = submit(redis_client, keyring, NAME, {"note": "visible-result-marker"})
    wait_result(redis_client, keyring, task_id)
    raw = redis_client.get(f"celery-task-meta-{task_id}")
    assert isinstance(raw, bytes)
    assert raw.startswith(b"tg1.")
    assert b"note_length" not in raw
    assert b"SUCCESS" not in base64.b64encode(raw)
