"""Sealed envelopes: AES-256-GCM bound to a task, optionally signed with Ed25519.

The round trip and wire format, what ``seal`` refuses, the time window, the binding to
one task, and key rotation (also through the key store).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from security.errors import (
    KeyRetiredError,
    KeyRingError,
    SealBindingError,
    SealError,
    SealExpiredError,
)
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.keystore import init_keys, load_keys, retire_key, rotate_keys
from security.sealing import CLOCK_SKEW, MAX_HEADER, open_bound, open_envelope, seal
from tests.support.envelopes import (
    NOW,
    SECRET,
    TASK_ID,
    TASK_NAME,
    TTL,
    b64d,
    broker,
    good_header,
    header_of,
    open_signed,
    public_only,
    refused,
    signer,
    sym,
)

# ---------------------------------------------------------------- sealing


def test_signed_round_trip(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A gateway-signed envelope opens for a worker holding only the public key."""
    opened = open_signed(sealed, keys, worker_verifiers)
    assert opened.plaintext == SECRET
    assert (opened.task_id, opened.task_name) == (TASK_ID, TASK_NAME)
    assert (opened.kid, opened.signer_kid) == ("broker-1", "signing-1")
    assert (opened.iat, opened.exp) == (NOW, NOW + TTL)


def test_unsigned_round_trip_for_results(keys: KeySet[SymmetricKey]) -> None:
    """A worker seals results unsigned; they open with require_signature=False."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    opened = open_envelope(data, keys=keys, verifiers=None, require_signature=False, now=NOW)
    assert opened.plaintext == SECRET
    assert opened.signer_kid is None


def test_round_trip_with_the_real_clock(keys: KeySet[SymmetricKey]) -> None:
    """Without now, seal and open use the current time."""
    data = seal(b"x", task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL)
    assert open_envelope(data, keys=keys, verifiers=None, require_signature=False).plaintext == b"x"


def test_envelope_wire_format(sealed: bytes) -> None:
    """tg1.<header>.<nonce+ct>.<sig>: the header names keys, task and times, no plaintext."""
    prefix, _, body_b64, sig_b64 = sealed.split(b".")
    assert prefix == b"tg1"
    assert header_of(sealed) == good_header(skid="signing-1")
    assert len(b64d(body_b64)) == 12 + len(SECRET) + 16
    assert len(b64d(sig_b64)) == 64
    assert b"secret" not in sealed
    assert b"=" not in sealed


def test_every_seal_uses_a_fresh_nonce(keys: KeySet[SymmetricKey]) -> None:
    """Sealing the same plaintext twice gives different nonces and ciphertexts."""
    bodies = {
        seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW).split(
            b"."
        )[2]
        for _ in range(20)
    }
    assert len({b64d(b)[:12] for b in bodies}) == 20


def test_opened_repr_hides_the_plaintext(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """repr of an opened envelope shows the binding, never the plaintext."""
    text = repr(open_signed(sealed, keys, worker_verifiers))
    assert TASK_ID in text
    assert "sk-very-secret" not in text


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan"), float("inf")])
def test_seal_refuses_a_bad_ttl(keys: KeySet[SymmetricKey], ttl: float) -> None:
    """ttl must be a positive finite number of seconds."""
    with pytest.raises(ValueError, match="ttl"):
        seal(b"x", task_id="t", task_name="n", keys=keys, signer=None, ttl=ttl, now=NOW)


def test_seal_refuses_a_signer_without_private_key(
    keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A worker's public-only signing key cannot sign."""
    with pytest.raises(KeyRingError) as info:
        seal(
            b"x",
            task_id="t",
            task_name="n",
            keys=keys,
            signer=public_only(gateway_signer),
            ttl=TTL,
            now=NOW,
        )
    assert info.value.reason == "no_private_key"


def test_seal_refuses_a_retired_signer(keys: KeySet[SymmetricKey]) -> None:
    """A retired signing key no longer signs."""
    with pytest.raises(KeyRetiredError) as info:
        seal(
            b"x",
            task_id="t",
            task_name="n",
            keys=keys,
            signer=signer(retired=True),
            ttl=TTL,
            now=NOW,
        )
    assert info.value.reason == "signer_retired"


def test_seal_refuses_without_a_live_key() -> None:
    """With every broker key retired there is nothing to seal with."""
    with pytest.raises(KeyRingError) as info:
        seal(
            b"x",
            task_id="t",
            task_name="n",
            keys=broker(sym("broker-1", retired=True)),
            signer=None,
            ttl=TTL,
            now=NOW,
        )
    assert info.value.reason == "no_key"


def test_seal_refuses_an_oversized_header(keys: KeySet[SymmetricKey]) -> None:
    """A task name that would make the header exceed MAX_HEADER is refused."""
    with pytest.raises(SealError) as info:
        seal(b"x", task_id="t", task_name="n" * MAX_HEADER, keys=keys, signer=None, ttl=1, now=NOW)
    assert info.value.reason == "bad_header"


# ---------------------------------------------------------------- time


def test_expired_envelope_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """At or after exp the envelope is SealExpiredError."""
    for now in (NOW + TTL, NOW + TTL + 3600):
        with pytest.raises(SealExpiredError) as info:
            open_signed(sealed, keys, worker_verifiers, now=now)
        assert info.value.reason == "expired"
    assert open_signed(sealed, keys, worker_verifiers, now=NOW + TTL - 0.001).plaintext == SECRET


def test_small_clock_skew_is_tolerated(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """An envelope issued up to CLOCK_SKEW seconds in the future opens."""
    assert open_signed(sealed, keys, worker_verifiers, now=NOW - CLOCK_SKEW).plaintext == SECRET


def test_envelope_from_the_future_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """An iat beyond the clock-skew leeway is refused."""
    refused("not_yet_valid", sealed, keys, verifiers=worker_verifiers, now=NOW - CLOCK_SKEW - 0.001)


# ---------------------------------------------------------------- binding


def test_binding_to_the_right_task_holds(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """check_binding and open_bound accept the task the envelope was sealed for."""
    open_signed(sealed, keys, worker_verifiers).check_binding(TASK_ID, TASK_NAME)
    opened = open_bound(
        sealed,
        task_id=TASK_ID,
        task_name=TASK_NAME,
        keys=keys,
        verifiers=worker_verifiers,
        now=NOW,
    )
    assert opened.plaintext == SECRET


def test_binding_to_another_task_id_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A body replayed under another task id is SealBindingError."""
    opened = open_signed(sealed, keys, worker_verifiers)
    with pytest.raises(SealBindingError) as info:
        opened.check_binding("another-id", TASK_NAME)
    assert info.value.reason == "task_id_mismatch"


def test_binding_to_another_task_name_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A body replayed as another task name is SealBindingError, also via open_bound."""
    with pytest.raises(SealBindingError) as info:
        open_bound(
            sealed,
            task_id=TASK_ID,
            task_name="admin.purge",
            keys=keys,
            verifiers=worker_verifiers,
            now=NOW,
        )
    assert info.value.reason == "task_name_mismatch"


def test_refusals_never_show_the_plaintext(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """No refusal message or repr contains the plaintext."""
    with pytest.raises(SealError) as info:
        open_bound(
            sealed,
            task_id="x",
            task_name="y",
            keys=keys,
            verifiers=worker_verifiers,
            now=NOW,
        )
    assert "sk-very-secret" not in str(info.value)
    assert "sk-very-secret" not in repr(info.value)


# ---------------------------------------------------------------- rotation


def test_rotation_keeps_old_envelopes_open_until_retired() -> None:
    """Sealed with key 1; add key 2: it still opens and new seals use key 2; retire 1: refused."""
    k1, k2 = sym("broker-1"), sym("broker-2")
    old = seal(SECRET, task_id="t", task_name="n", keys=broker(k1), signer=None, ttl=TTL, now=NOW)
    rotated = broker(k1, k2)
    opened = open_envelope(old, keys=rotated, verifiers=None, require_signature=False, now=NOW)
    assert opened.kid == "broker-1"
    new = seal(SECRET, task_id="t", task_name="n", keys=rotated, signer=None, ttl=TTL, now=NOW)
    assert header_of(new)["kid"] == "broker-2"
    retired = broker(SymmetricKey(k1.kid, k1.purpose, k1.secret, retired=True), k2)
    with pytest.raises(KeyRetiredError):
        open_envelope(old, keys=retired, verifiers=None, require_signature=False, now=NOW)
    assert open_envelope(new, keys=retired, verifiers=None, require_signature=False, now=NOW)


def test_rotation_through_the_keystore(tmp_path: Path) -> None:
    """The same rotation story with keys on disk, gateway sealing and a worker opening."""
    keys_dir = tmp_path / "keys"
    gateway = init_keys(keys_dir, now=NOW)

    def gateway_seal(ring_signer: SigningKey, ring_keys: KeySet[SymmetricKey]) -> bytes:
        return seal(
            SECRET,
            task_id=TASK_ID,
            task_name=TASK_NAME,
            keys=ring_keys,
            signer=ring_signer,
            ttl=TTL,
            now=NOW,
        )

    old = gateway_seal(gateway.signing.current(), gateway.broker)
    old_kid = gateway.broker.current().kid
    gateway = rotate_keys(keys_dir, [Purpose.BROKER], now=NOW + 1)
    worker = load_keys(keys_dir, role="worker")
    assert open_signed(old, worker.broker, worker.signing).kid == old_kid
    new = gateway_seal(gateway.signing.current(), gateway.broker)
    assert open_signed(new, worker.broker, worker.signing).kid == gateway.broker.current().kid
    retire_key(keys_dir, old_kid)
    worker = load_keys(keys_dir, role="worker")
    with pytest.raises(KeyRetiredError):
        open_signed(old, worker.broker, worker.signing)
    assert open_signed(new, worker.broker, worker.signing).plaintext == SECRET
    # Results: the worker seals unsigned with no private signing key; the gateway opens.
    result = seal(
        b"done", task_id=TASK_ID, task_name=TASK_NAME, keys=worker.broker, signer=None, ttl=TTL
    )
    gateway = load_keys(keys_dir, role="gateway")
    assert (
        open_envelope(
            result, keys=gateway.broker, verifiers=gateway.signing, require_signature=False
        ).plaintext
        == b"done"
    )
