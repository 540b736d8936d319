"""Sealed envelopes: AES-256-GCM bound to a task, optionally signed with Ed25519."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.errors import (
    KeyRetiredError,
    KeyRingError,
    NotSealedError,
    SealBindingError,
    SealError,
    SealExpiredError,
)
from security.keys import KeySet, Purpose, SigningKey, SymmetricKey
from security.keystore import init_keys, load_keys, retire_key, rotate_keys
from security.sealing import (
    CLOCK_SKEW,
    MAX_HEADER,
    Opened,
    open_bound,
    open_envelope,
    open_unverified,
    seal,
)

NOW = 1_750_000_000.0
TTL = 300.0
TASK_ID = "7d1e5a0c-2f5b-4a44-9a3e-0f1c2b3a4d5e"
TASK_NAME = "reports.render"
SECRET = b'{"to": "ops@example.com", "api_key": "sk-very-secret"}'
FAILED = "envelope failed authentication"


def broker(*keys: SymmetricKey) -> KeySet[SymmetricKey]:
    return KeySet(Purpose.BROKER, keys)


def sym(kid: str, *, retired: bool = False) -> SymmetricKey:
    return SymmetricKey(kid, Purpose.BROKER, os.urandom(32), retired=retired)


def signer(kid: str = "signing-1", *, retired: bool = False) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid, private.public_key(), private, retired=retired)


def public_only(key: SigningKey) -> SigningKey:
    return SigningKey(key.kid, key.public, None, retired=key.retired)


def verifiers(*keys: SigningKey) -> KeySet[SigningKey]:
    return KeySet(Purpose.SIGNING, keys)


def b64e(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def b64d(seg: bytes) -> bytes:
    return base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4))


@pytest.fixture
def key() -> SymmetricKey:
    return sym("broker-1")


@pytest.fixture
def keys(key: SymmetricKey) -> KeySet[SymmetricKey]:
    return broker(key)


@pytest.fixture
def gateway_signer() -> SigningKey:
    return signer()


@pytest.fixture
def worker_verifiers(gateway_signer: SigningKey) -> KeySet[SigningKey]:
    return verifiers(public_only(gateway_signer))


@pytest.fixture
def sealed(keys: KeySet[SymmetricKey], gateway_signer: SigningKey) -> bytes:
    return seal(
        SECRET,
        task_id=TASK_ID,
        task_name=TASK_NAME,
        keys=keys,
        signer=gateway_signer,
        ttl=TTL,
        now=NOW,
    )


def open_signed(
    data: bytes,
    keys: KeySet[SymmetricKey],
    worker_verifiers: KeySet[SigningKey] | None,
    now: float = NOW + 1,
) -> Opened:
    return open_envelope(data, keys=keys, verifiers=worker_verifiers, now=now)


def refused(reason: str, data: bytes, keys: KeySet[SymmetricKey], **kwargs: object) -> SealError:
    """Open ``data`` and return the SealError it must raise with ``reason``."""
    kwargs.setdefault("verifiers", None)
    kwargs.setdefault("now", NOW + 1)
    with pytest.raises(SealError) as info:
        open_envelope(data, keys=keys, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason, info.value.message
    return info.value


def forge(
    header: dict[str, object] | bytes,
    key: SymmetricKey,
    sign_with: SigningKey | None = None,
    plaintext: bytes = SECRET,
) -> bytes:
    """Build an envelope around an arbitrary header, encrypted (and signed) correctly."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    nonce = os.urandom(12)
    body = nonce + AESGCM(key.secret).encrypt(nonce, plaintext, raw)
    signed = b"tg1." + b64e(raw) + b"." + b64e(body)
    sig = b"" if sign_with is None or sign_with.private is None else sign_with.private.sign(signed)
    return signed + b"." + b64e(sig)


def header_of(data: bytes) -> dict[str, object]:
    doc: dict[str, object] = json.loads(b64d(data.split(b".")[1]))
    return doc


def good_header(**changes: object) -> dict[str, object]:
    h: dict[str, object] = {
        "v": 1,
        "kid": "broker-1",
        "skid": None,
        "tid": TASK_ID,
        "tn": TASK_NAME,
        "iat": NOW,
        "exp": NOW + TTL,
    }
    h.update(changes)
    return h


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


# ---------------------------------------------------------------- structural refusals


@pytest.mark.parametrize("data", [b"", b"{}", b'{"task": "x"}', b"tg2.a.b.c", b"TG1.a.b.c"])
def test_open_refuses_what_is_not_an_envelope(keys: KeySet[SymmetricKey], data: bytes) -> None:
    """Anything without the tg1. prefix is NotSealedError."""
    with pytest.raises(NotSealedError):
        open_envelope(data, keys=keys, verifiers=None, now=NOW)


@pytest.mark.parametrize("rest", [b"", b"a", b"a.b", b"a.b.c.d"])
def test_open_refuses_the_wrong_number_of_parts(keys: KeySet[SymmetricKey], rest: bytes) -> None:
    """An envelope must have exactly header, body and signature parts."""
    refused("malformed", b"tg1." + rest, keys)


def test_open_refuses_an_oversized_header(keys: KeySet[SymmetricKey]) -> None:
    """A header longer than MAX_HEADER is refused before it is decoded."""
    refused("bad_header", b"tg1." + b"A" * (MAX_HEADER + 4) + b".AAAA.", keys)


@pytest.mark.parametrize("header", [b"A", b"A=AA", b"e30+", b"e31"])
def test_open_refuses_non_canonical_base64(keys: KeySet[SymmetricKey], header: bytes) -> None:
    """Bad length, padding, the standard alphabet or spare bits set: all refused."""
    refused("malformed", b"tg1." + header + b".AAAA.", keys)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"v": 1, "v": 1}',
        b'{"v": NaN}',
        b"\xff\xfe",
        json.dumps(good_header(iat=1e400)).encode(),
    ],
)
def test_open_refuses_a_header_that_is_not_strict_json(
    key: SymmetricKey, keys: KeySet[SymmetricKey], raw: bytes
) -> None:
    """Non-JSON, duplicate keys, NaN/Infinity and invalid UTF-8 headers are refused."""
    refused("bad_header", forge(raw, key), keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": True},
        {"v": 1.0},
        {"kid": 1},
        {"skid": 5},
        {"tid": None},
        {"tn": ["x"]},
        {"iat": "now"},
        {"exp": True},
        {"exp": NOW},
        {"exp": NOW - 1},
        {"extra": 1},
    ],
)
def test_open_refuses_a_header_with_wrong_fields(
    key: SymmetricKey, keys: KeySet[SymmetricKey], changes: dict[str, object]
) -> None:
    """Every header field must be present with its exact type, and exp after iat."""
    refused("bad_header", forge(good_header(**changes), key), keys)


def test_open_refuses_a_header_with_a_missing_field(
    key: SymmetricKey, keys: KeySet[SymmetricKey]
) -> None:
    """A header lacking a field is refused."""
    h = good_header()
    del h["exp"]
    refused("bad_header", forge(h, key), keys)


def test_open_refuses_a_too_short_body(key: SymmetricKey, keys: KeySet[SymmetricKey]) -> None:
    """A body shorter than nonce plus tag is refused."""
    data = forge(good_header(), key).split(b".")
    data[2] = b64e(b"\0" * 27)
    refused("malformed", b".".join(data), keys, require_signature=False)


# ---------------------------------------------------------------- keys


def test_open_refuses_an_unknown_key(sealed: bytes, worker_verifiers: KeySet[SigningKey]) -> None:
    """An envelope sealed with a key not in the ring is refused as unknown_kid."""
    refused("unknown_kid", sealed, broker(sym("broker-2")), verifiers=worker_verifiers)


def test_open_refuses_a_malformed_kid(key: SymmetricKey, keys: KeySet[SymmetricKey]) -> None:
    """A kid that is not even a key id shape is refused as unknown."""
    refused("unknown_kid", forge(good_header(kid="../../x"), key), keys)


def test_open_refuses_a_retired_broker_key(
    sealed: bytes, key: SymmetricKey, worker_verifiers: KeySet[SigningKey]
) -> None:
    """A key retired since sealing gives KeyRetiredError saying it was retired."""
    retired = broker(SymmetricKey(key.kid, key.purpose, key.secret, retired=True), sym("broker-2"))
    with pytest.raises(KeyRetiredError) as info:
        open_signed(sealed, retired, worker_verifiers)
    assert info.value.reason == "key_retired"
    assert "retired" in str(info.value)
    assert "broker-1" in str(info.value)


# ---------------------------------------------------------------- tampering


def swap_part(data: bytes, index: int, new: bytes) -> bytes:
    parts = data.split(b".")
    parts[index] = new
    return b".".join(parts)


def flip(segment: bytes, at: int) -> bytes:
    raw = bytearray(b64d(segment))
    raw[at] ^= 0x01
    return b64e(bytes(raw))


def test_tampered_header_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A re-encoded header naming another task fails the signature check."""
    h = header_of(sealed)
    h["tn"] = "admin.delete_everything"
    data = swap_part(sealed, 1, b64e(json.dumps(h, separators=(",", ":")).encode()))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_tampered_header_fails_authentication_unsigned(
    key: SymmetricKey, keys: KeySet[SymmetricKey]
) -> None:
    """Without a signature, the AEAD still refuses a changed header (it is the AAD)."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    h = header_of(data)
    h["exp"] = NOW + 10 * TTL
    data = swap_part(data, 1, b64e(json.dumps(h).encode()))
    err = refused("bad_ciphertext", data, keys, require_signature=False)
    assert err.message == FAILED


@pytest.mark.parametrize("at", [0, 11])
def test_tampered_nonce_fails_authentication(
    keys: KeySet[SymmetricKey], at: int, worker_verifiers: KeySet[SigningKey]
) -> None:
    """A changed nonce is refused."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    data = swap_part(data, 2, flip(data.split(b".")[2], at))
    err = refused("bad_ciphertext", data, keys, require_signature=False)
    assert err.message == FAILED


@pytest.mark.parametrize("at", [12, -1])
def test_tampered_ciphertext_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], at: int
) -> None:
    """A changed ciphertext or tag fails the signature check before any decryption."""
    data = swap_part(sealed, 2, flip(sealed.split(b".")[2], at))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_tampered_signature_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A changed signature is refused."""
    data = swap_part(sealed, 3, flip(sealed.split(b".")[3], 5))
    err = refused("bad_signature", data, keys, verifiers=worker_verifiers)
    assert err.message == FAILED


def test_truncated_signature_fails_authentication(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A signature of the wrong length is refused."""
    data = swap_part(sealed, 3, b64e(b64d(sealed.split(b".")[3])[:32]))
    refused("bad_signature", data, keys, verifiers=worker_verifiers)


def test_signature_is_checked_before_decrypting(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A body that would not even decrypt is refused by the signature check first."""
    data = swap_part(sealed, 2, b64e(b"\0" * 27))
    refused("bad_signature", data, keys, verifiers=worker_verifiers)


# ---------------------------------------------------------------- signatures


def test_missing_signature_is_refused_when_required(keys: KeySet[SymmetricKey]) -> None:
    """An unsigned envelope is refused where a signature is required (the default)."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    refused("missing_signature", data, keys, verifiers=verifiers(signer()))


def test_stripped_signature_is_refused_even_when_optional(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """A header naming a signer with the signature removed is refused."""
    refused(
        "missing_signature",
        swap_part(sealed, 3, b""),
        keys,
        verifiers=worker_verifiers,
        require_signature=False,
    )


def test_unannounced_signature_is_refused(
    key: SymmetricKey, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signature the header does not name is refused as tampering."""
    err = refused(
        "bad_signature", forge(good_header(), key, gateway_signer), keys, require_signature=False
    )
    assert err.message == FAILED


def test_signed_envelope_without_verifiers_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey]
) -> None:
    """A signature that cannot be checked is not silently accepted."""
    refused("no_verifier", sealed, keys, verifiers=None, require_signature=False)


def test_signature_by_an_unknown_key_is_refused(sealed: bytes, keys: KeySet[SymmetricKey]) -> None:
    """A signer kid not in verifiers is refused."""
    refused("unknown_signer", sealed, keys, verifiers=verifiers(signer("signing-2")))


def test_signature_by_a_malformed_signer_kid_is_refused(
    key: SymmetricKey, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signer kid that is not a key id shape is refused as unknown."""
    data = forge(good_header(skid="a/b"), key, gateway_signer)
    refused("unknown_signer", data, keys, verifiers=verifiers(gateway_signer))


def test_signature_from_a_key_not_in_verifiers_is_refused(
    keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """Another key that reuses a trusted kid does not verify."""
    impostor = signer(gateway_signer.kid)
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=impostor, ttl=TTL, now=NOW)
    err = refused("bad_signature", data, keys, verifiers=verifiers(public_only(gateway_signer)))
    assert err.message == FAILED


def test_signature_by_a_retired_key_is_refused(
    sealed: bytes, keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A signing key retired since signing gives KeyRetiredError saying so."""
    retired = SigningKey(gateway_signer.kid, gateway_signer.public, None, retired=True)
    with pytest.raises(KeyRetiredError) as info:
        open_signed(sealed, keys, verifiers(retired, signer("signing-2")))
    assert info.value.reason == "signer_retired"
    assert "retired" in str(info.value)


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


# ---------------------------------------------------------------- signature checked last


def test_open_unverified_then_verify_gives_what_open_envelope_gives(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey]
) -> None:
    """Decrypted first, the signature checked on verify(): the same opened envelope."""
    pending = open_unverified(sealed, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    assert (pending.task_id, pending.task_name, pending.plaintext) == (TASK_ID, TASK_NAME, SECRET)
    assert pending.exp == NOW + TTL
    assert pending.verify() == open_signed(sealed, keys, worker_verifiers)
    assert SECRET not in repr(pending).encode()


def test_open_unverified_opens_an_unsigned_envelope_where_none_is_required(
    keys: KeySet[SymmetricKey],
) -> None:
    """Nothing to verify (a result, sealed unsigned by a worker): verify() just opens it."""
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    pending = open_unverified(data, keys=keys, verifiers=None, require_signature=False, now=NOW)
    assert pending.verify().plaintext == SECRET


@pytest.mark.parametrize("at", [5, -1])
def test_a_bad_signature_is_refused_by_verify(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], at: int
) -> None:
    """An envelope whose AEAD tag holds but whose signature does not - only a holder of the
    broker key can make one - opens unverified and is refused by verify()."""
    data = swap_part(sealed, 3, flip(sealed.split(b".")[3], at))
    pending = open_unverified(data, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    with pytest.raises(SealError) as info:
        pending.verify()
    assert info.value.reason == "bad_signature"
    assert info.value.message == FAILED


def test_a_signature_by_another_key_is_refused_by_verify(
    keys: KeySet[SymmetricKey], gateway_signer: SigningKey
) -> None:
    """A worker's forgery (broker key, but not the gateway's signing key) fails verify()."""
    impostor = signer(gateway_signer.kid)
    data = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=impostor, ttl=TTL, now=NOW)
    pending = open_unverified(
        data, keys=keys, verifiers=verifiers(public_only(gateway_signer)), now=NOW + 1
    )
    with pytest.raises(SealError) as info:
        pending.verify()
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("part", [1, 2])
def test_open_unverified_refuses_tampering_by_the_aead_tag_first(
    sealed: bytes, keys: KeySet[SymmetricKey], worker_verifiers: KeySet[SigningKey], part: int
) -> None:
    """A changed header or body never gets as far as the signature: bad_ciphertext."""
    if part == 1:
        h = header_of(sealed)
        h["tn"] = "admin.delete_everything"
        data = swap_part(sealed, 1, b64e(json.dumps(h, separators=(",", ":")).encode()))
    else:
        data = swap_part(sealed, 2, flip(sealed.split(b".")[2], 12))
    with pytest.raises(SealError) as info:
        open_unverified(data, keys=keys, verifiers=worker_verifiers, now=NOW + 1)
    assert info.value.reason == "bad_ciphertext"
    assert info.value.message == FAILED


def test_open_unverified_refuses_what_needs_no_arithmetic(
    sealed: bytes,
    key: SymmetricKey,
    keys: KeySet[SymmetricKey],
    worker_verifiers: KeySet[SigningKey],
    gateway_signer: SigningKey,
) -> None:
    """Missing, stripped or unannounced signatures, unknown or retired signers, expiry and
    unknown broker keys are refused at once, before verify() could be called."""
    unsigned = seal(SECRET, task_id="t", task_name="n", keys=keys, signer=None, ttl=TTL, now=NOW)
    retired = verifiers(SigningKey(gateway_signer.kid, gateway_signer.public, None, retired=True))
    cases: list[tuple[str, bytes, KeySet[SymmetricKey], KeySet[SigningKey], float]] = [
        ("missing_signature", unsigned, keys, worker_verifiers, NOW + 1),
        ("missing_signature", swap_part(sealed, 3, b""), keys, worker_verifiers, NOW + 1),
        ("bad_signature", forge(good_header(), key, gateway_signer), keys, worker_verifiers, NOW),
        ("unknown_signer", sealed, keys, verifiers(signer("signing-2")), NOW + 1),
        ("signer_retired", sealed, keys, retired, NOW + 1),
        ("expired", sealed, keys, worker_verifiers, NOW + TTL),
        ("unknown_kid", sealed, broker(sym("broker-2")), worker_verifiers, NOW + 1),
    ]
    for reason, data, broker_keys, signing, now in cases:
        with pytest.raises((SealError, KeyRetiredError)) as info:
            open_unverified(data, keys=broker_keys, verifiers=signing, now=now)
        assert info.value.reason == reason
