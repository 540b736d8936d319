"""Signed checkpoints: Ed25519 over (stream, seq, mac, time, kid), public key enough."""

from __future__ import annotations

import json
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from security.audit.chain import GENESIS, Head
from security.audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from security.errors import AuditError, KeyRingError
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey

NOW = 1_700_000_123.5
HEAD = Head(42, "ab" * 32)


def _signer(kid: str = "signing-1", *, retired: bool = False) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid, private.public_key(), private, retired=retired)


def _public(key: SigningKey, *, retired: bool = False) -> SigningKey:
    return SigningKey(key.kid, key.public, None, retired=retired)


SIGNER = _signer()
VERIFIERS = KeySet(Purpose.SIGNING, [_public(SIGNER)])


def _cp(**overrides: object) -> dict[str, object]:
    cp = sign_checkpoint(HEAD, SIGNER, stream="tg:audit", now=NOW).to_dict()
    cp.update(overrides)
    return cp


def test_checkpoint_round_trips_with_only_the_public_key() -> None:
    """A signed checkpoint verifies with the public half alone, as dict, str or bytes."""
    cp = _cp()
    assert cp == {
        "v": 1,
        "stream": "tg:audit",
        "seq": 42,
        "mac": "ab" * 32,
        "time": NOW,
        "kid": "signing-1",
        "sig": cp["sig"],
    }
    text = json.dumps(cp)
    for form in (cp, text, text.encode()):
        checked = verify_checkpoint(form, VERIFIERS)
        assert isinstance(checked, Checkpoint)
        assert checked.head == HEAD
        assert checked.to_dict() == cp


def test_checkpoint_time_defaults_to_now() -> None:
    """Without ``now`` the checkpoint is stamped with the current time."""
    before = time.time()
    cp = sign_checkpoint(Head(0, GENESIS), SIGNER, stream="tg:audit")
    assert before <= cp.time <= time.time()
    assert verify_checkpoint(cp.to_dict(), VERIFIERS).seq == 0


def test_integer_time_in_json_is_accepted() -> None:
    """A checkpoint whose time is a whole number (as JSON may give it) still verifies."""
    cp = sign_checkpoint(HEAD, SIGNER, stream="tg:audit", now=1_700_000_000.0).to_dict()
    cp["time"] = 1_700_000_000
    assert verify_checkpoint(cp, VERIFIERS).time == 1_700_000_000.0


def test_checkpoint_signed_by_a_retired_key_still_verifies() -> None:
    """A checkpoint is evidence about the past: a retired signer still verifies it."""
    old = _signer("signing-1")
    cp = sign_checkpoint(HEAD, old, stream="tg:audit", now=NOW).to_dict()
    keys = KeySet(Purpose.SIGNING, [_public(old, retired=True), _public(_signer("signing-2"))])
    assert verify_checkpoint(cp, keys).kid == "signing-1"


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 43},
        {"mac": "cd" * 32},
        {"time": NOW + 1},
        {"stream": "tg:other"},
        {"sig": "A" * 86},
    ],
)
def test_altered_checkpoint_fails_its_signature(change: dict[str, object]) -> None:
    """Changing any signed value (or the signature) is bad_signature."""
    with pytest.raises(AuditError) as info:
        verify_checkpoint(_cp(**change), VERIFIERS)
    assert info.value.reason == "bad_signature"


def test_checkpoint_from_another_signer_is_refused() -> None:
    """A checkpoint signed by a key with the same kid but another secret is bad_signature."""
    impostor = sign_checkpoint(HEAD, _signer(), stream="tg:audit", now=NOW).to_dict()
    with pytest.raises(AuditError) as info:
        verify_checkpoint(impostor, VERIFIERS)
    assert info.value.reason == "bad_signature"


def test_checkpoint_with_unknown_kid_is_refused() -> None:
    """A kid absent from the verifiers is unknown_kid."""
    cp = sign_checkpoint(HEAD, _signer("signing-9"), stream="tg:audit", now=NOW).to_dict()
    with pytest.raises(AuditError) as info:
        verify_checkpoint(cp, VERIFIERS)
    assert info.value.reason == "unknown_kid"


@pytest.mark.parametrize(
    "form",
    [
        "not json",
        b"\xff",
        "[1, 2]",
        json.dumps({"v": 1}),
        {"extra": 1},
        {"v": 2},
        {"v": True},
        {"stream": ""},
        {"stream": 7},
        {"stream": "s" * 129},
        {"seq": True},
        {"seq": "42"},
        {"seq": -1},
        {"mac": 7},
        {"mac": "AB" * 32},
        {"time": True},
        {"time": "now"},
        {"time": float("nan")},
        {"kid": 7},
        {"kid": "bad kid!"},
        {"sig": 7},
        {"sig": "short"},
    ],
)
def test_malformed_checkpoint_is_refused(form: object) -> None:
    """Anything but the exact checkpoint shape is bad_checkpoint."""
    if isinstance(form, dict):
        form = _cp(**form)
    with pytest.raises(AuditError) as info:
        verify_checkpoint(form, VERIFIERS)  # type: ignore[arg-type]
    assert info.value.reason == "bad_checkpoint"


def test_signing_needs_the_private_half() -> None:
    """A public-only signing key cannot make checkpoints."""
    with pytest.raises(KeyRingError) as info:
        sign_checkpoint(HEAD, _public(SIGNER), stream="tg:audit")
    assert info.value.reason == "no_private_key"


def test_verifiers_must_be_signing_keys() -> None:
    """An audit (HMAC) key set cannot verify checkpoints."""
    audit = KeySet(
        Purpose.AUDIT_GATEWAY, [SymmetricKey("audit-1", Purpose.AUDIT_GATEWAY, os.urandom(32))]
    )
    with pytest.raises(KeyRingError) as info:
        verify_checkpoint(_cp(), audit)  # type: ignore[arg-type]
    assert info.value.reason == "purpose"
