"""Leak guard edges: bounded work, nesting depth, odd base64, key material, hostile input.

Credential samples are assembled from parts at run time, as in ``test_leakguard``.
"""

from __future__ import annotations

import base64
import random
import string
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from security import leak_decode, leak_formats
from security.leak_keys import key_material
from security.leakguard import Finding, scan

ALNUM = string.ascii_letters + string.digits
_rng = random.Random(7)  # noqa: S311 - reproducible test data, not key material
GHP = "gh" + "p_" + "".join(_rng.choice(ALNUM) for _ in range(36))
STRIPE_BODY = "".join(_rng.choice(ALNUM) for _ in range(24))


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def test_base64_nested_three_deep_is_unwrapped() -> None:
    """base64(base64(base64(token))) is still found: each level is decoded in turn."""
    assert scan({"v": _b64(_b64(_b64(GHP)))}) == [Finding("v", "github_token_in_base64")]


def test_decoding_stops_after_the_candidate_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many base64 runs and Basic values a string holds, at most the budget is decoded."""
    calls = {"n": 0}
    real = leak_decode._decode

    def counting(run: str, altchars: bytes | None) -> bytes | None:
        calls["n"] += 1
        return real(run, altchars)

    monkeypatch.setattr(leak_decode, "_decode", counting)
    runs = " ".join(_b64(f"line {i} of some harmless text") for i in range(200))
    basics = " ".join(f"Basic {_b64(f'nothing {i}')}" for i in range(200))
    assert scan({"v": runs, "w": basics}) == []
    # two decodes at most per run (the sniff, then in full), per value
    assert calls["n"] <= 2 * 2 * leak_decode.MAX_CANDIDATES


def test_long_binary_base64_is_data_and_passes() -> None:
    """Random bytes past MAX_DECODE characters of base64 are data, not read in full."""
    blob = _b64(random.Random(1).randbytes(leak_decode.MAX_DECODE))  # noqa: S311
    assert len(blob) > leak_decode.MAX_DECODE
    assert scan({"v": blob, "wrapped": base64.encodebytes(blob.encode()).decode()}) == []


def test_wrapped_block_with_padding_inside_is_judged_without_error() -> None:
    """Even lines that do not join into valid base64 are left to the entropy test."""
    line = "QWJj" * 8  # "Abc" again and again
    block = "\n".join([line, line[:-2] + "==", line, "QWJj"])
    assert scan({"v": block}) == []


def test_openssh_private_key_body_without_its_header_is_found() -> None:
    """The base64 body of an OpenSSH private key is a key even with the PEM lines cut off."""
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    body = "\n".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert scan({"v": body}) == [Finding("v", "private_key_der")]


def test_spaced_eyj_run_that_is_not_a_jwt_header_passes() -> None:
    """An 'eyJ' run split around a dot is a JWT only if its header decodes to JSON."""
    assert scan({"v": "eyJab cdef . wxyz and more"}) == []
    assert scan({"v": "eyJhbGciOi JIUzI1NiJ9 . eyJzdWIiOiJ4In0 . c2ln"}) == [Finding("v", "jwt")]


def test_split_candidates_per_format_are_capped() -> None:
    """Past MAX_SPLIT_TRIES decoys of one format, a split key of that format is not examined."""
    key = "sk" + "_live_ " + " ".join(STRIPE_BODY[i : i + 4] for i in range(0, 24, 4))
    decoy = "sk" + "_live_ keys are never pasted here"
    few = [decoy] * (leak_formats.MAX_SPLIT_TRIES - 1)
    many = [decoy] * leak_formats.MAX_SPLIT_TRIES
    assert scan({"v": ", ".join([*few, key])}) == [Finding("v", "stripe_key")]
    assert scan({"v": ", ".join([*many, key])}) == []


@pytest.mark.parametrize(
    "hostile",
    [
        "eyJ " * 50_000,
        "AKIA " * 50_000,
        "-" * 200_000,
        "-----BEGIN " * 20_000,
        ("sk" + "_live_ a ") * 20_000,
        "Basic QUJDRA== " * 20_000,
        "a-" * 100_000,
        ("QUJD" * 19 + "\n") * 3_000,
        "0123456789abcdef" * 12_000,
        "=" * 200_000,
        " ".join(str(uuid.UUID(int=_rng.getrandbits(128))) for _ in range(5_500)),
        " ".join("ORD-" + "".join(_rng.choice(ALNUM) for _ in range(24)) for _ in range(7_000)),
    ],
    ids=[
        *("eyJ", "AKIA", "dashes", "BEGIN", "sk_live", "basic", "a-", "wrapped", "hex"),
        *("equals", "uuids", "references"),
    ],
)
def test_hostile_input_is_scanned_in_linear_time(hostile: str) -> None:
    """~200 KB crafted against each pattern is scanned well within a second."""
    started = time.perf_counter()
    scan({"v": hostile})
    assert time.perf_counter() - started < 1.0


def _rsa_public_pkcs1() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"openssh-key-v1\x00\x00\x00\x00", "private"),
        (b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", "private"),
        (b"\x30\x77\x02\x01\x01\x04\x20" + bytes(11), "private"),
        (b"\x00\x00\x00\x0bssh-ed25519\x00\x00", "public"),
        (b"\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08", "public"),
        (b"\x30\x82\x01\x0a\x30\x82\x00\xf0\xa0\x03\x02\x01\x02\x02\x02\x10\x00\x01", "public"),
        (b"\x30\x81\xf4\x30\x5f\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0d\x30", "private"),
        (b"\x30", None),
        (b"\x30\x03\x02", None),
        (b"\x31\x05\x02\x01\x00\x30\x00", None),
        (b"\x30\x10\x30\x0e\x04\x0c" + bytes(12), None),
        (b"\x30\x10\x05\x00" + bytes(14), None),
    ],
    ids=[
        *("openssh", "pkcs8", "sec1", "ssh-public", "spki", "certificate", "encrypted-pkcs8"),
        *("one-byte", "truncated", "a-set", "octet-string-inside", "null-inside"),
    ],
)
def test_key_material_tells_private_from_public(head: bytes, expected: str | None) -> None:
    """The first bytes say private key, public key or certificate, or nothing at all."""
    assert key_material(head) == expected


def test_pkcs1_rsa_public_key_is_public() -> None:
    """An RSA public key in PKCS#1 starts with its modulus, never a one-byte version."""
    assert key_material(_rsa_public_pkcs1()[:18]) == "public"
