"""Labelled corpus for the leak guard: values it must refuse and values it must let through.

Every credential is generated here from a seeded RNG and harmless parts, never a real one
(and no credential-shaped literal sits in this file, so secret scanners stay quiet). Images
are real bytes written by Pillow, keys real DER from ``cryptography``. Each sample is a
whole payload, so field names count as they would at the gateway.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import random
import string
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from PIL import Image

__all__ = ["CATCH", "PASS", "Sample"]

ALNUM = string.ascii_letters + string.digits
UPPER36 = string.ascii_uppercase + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
_rng = random.Random(20261207)  # noqa: S311 - reproducible test data, not key material


@dataclass(frozen=True)
class Sample:
    """One labelled payload: ``label`` says what it is, ``payload`` is what a client sends."""

    label: str
    payload: Any


def _rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _groups(text: str, size: int, sep: str) -> str:
    return sep.join(text[i : i + size] for i in range(0, len(text), size))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# --- fake credentials ------------------------------------------------------------------

AWS = "AK" + "IA" + _rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
AWS_TEMP = "AS" + "IA" + _rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
GHP = "gh" + "p_" + _rand(ALNUM, 36)
GHO = "gh" + "o_" + _rand(ALNUM, 36)
GH_PAT = "github" + "_pat_" + _rand(ALNUM, 22) + "_" + _rand(ALNUM, 59)
STRIPE = "sk" + "_live_" + _rand(ALNUM, 24)
STRIPE_LONG = "rk" + "_live_" + _rand(ALNUM, 99)
SLACK = "xo" + "xb-" + _rand(string.digits, 12) + "-" + _rand(string.digits, 13) + "-"
SLACK += _rand(ALNUM, 24)
GOOGLE = "AI" + "za" + "Sy" + _rand(B64URL.replace("-", "").replace("_", ""), 33)
JWT = ".".join(
    (
        _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
        _b64url(json.dumps({"sub": "user-42", "exp": 1900000000, "scope": "admin"}).encode()),
        _rand(B64URL, 43),
    )
)
PEM_HEADER = "-----BEGIN " + "RSA PRIVATE" + " KEY-----"
PEM_BODY = _groups(_b64(bytes(range(200))), 64, "\n")
PEM = f"{PEM_HEADER}\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
URL_CREDS = "postgres://app:" + _rand(ALNUM, 16) + "@db.internal:5432/app"
USER_PASS = "deploy-bot:" + _rand(ALNUM, 20)
RANDOM_B64 = _rand(B64URL, 43)  # what secrets.token_urlsafe(32) returns
RANDOM_HEX = _rand(HEX, 48)


def _der(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_DER = _der(EC_KEY)
ED_DER = _der(ed25519.Ed25519PrivateKey.generate())
EC_ENCRYPTED_DER = EC_KEY.private_bytes(
    serialization.Encoding.DER,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"correct horse"),
)
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reports.example.com")])
_CERT = (
    x509.CertificateBuilder()
    .subject_name(_NAME)
    .issuer_name(_NAME)
    .public_key(EC_KEY.public_key())
    .serial_number(4242)
    .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    .not_valid_after(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
    .sign(EC_KEY, hashes.SHA256())
)
CERT_PEM = _CERT.public_bytes(serialization.Encoding.PEM).decode()
PUBLIC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
SSH_PUBLIC = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


# --- real images -----------------------------------------------------------------------


def _image(fmt: str, size: tuple[int, int], noise: bool = True, **save: Any) -> bytes:
    img = Image.new("RGB", size, (200, 30, 90))
    if noise:
        img.putdata(
            [(_rng.randrange(256), _rng.randrange(256), 90) for _ in range(size[0] * size[1])]
        )
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


PNG = _image("PNG", (48, 48))  # ~7 KB, wraps to ~120 lines of 76
JPEG = _image("JPEG", (64, 64), quality=90)
GIF = _image("GIF", (40, 40))
WEBP = _image("WEBP", (40, 40), quality=80)
TINY_PNG = _image("PNG", (1, 1), noise=False)
TINY_GIF = _image("GIF", (1, 1), noise=False)
SMALL_JPEG = _image("JPEG", (8, 8), noise=False, quality=50)
SMALL_WEBP = _image("WEBP", (4, 4), noise=False)


def _wrapped(data: bytes, width: int = 76, newline: str = "\n") -> str:
    """Base64 as the ``base64`` command (76 columns) or PEM/MIME tools (64) write it."""
    text = _b64(data)
    return newline.join(text[i : i + width] for i in range(0, len(text), width)) + newline


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{_b64(data)}"


# --- must be caught --------------------------------------------------------------------

CATCH: list[Sample] = [
    # the known formats, as they are
    Sample("aws key id", {"notes": f"key {AWS} for the backup job"}),
    Sample("github classic token", {"notes": GHP}),
    Sample("github fine-grained token", {"comment": f"use {GH_PAT} please"}),
    Sample("stripe secret key", {"config": {"stripe": STRIPE}}),
    Sample("slack bot token", {"notes": SLACK}),
    Sample("google api key", {"maps": GOOGLE}),
    Sample("jwt", {"notes": f"Bearer {JWT}"}),
    Sample("pem private key", {"attachment": PEM}),
    Sample("url with a password", {"dsn": URL_CREDS}),
    Sample("random urlsafe token", {"notes": f"my token is {RANDOM_B64}"}),
    Sample("random hex, not a digest length", {"notes": RANDOM_HEX}),
    Sample("github token in an order field", {"order_id": GHO}),
    Sample("basic auth in an invoice field", {"invoice_ref": "Basic " + _b64(USER_PASS)}),
    Sample("digest-shaped hex called a key", {"notes": f"api key: {_rand(HEX, 64)}"}),
    Sample("digest-shaped hex called a secret", {"text": f"client secret={_rand(HEX, 32)}"}),
    # base64-wrapped
    Sample("basic auth header value", {"notes": "Basic " + _b64(USER_PASS)}),
    Sample("basic auth in a header line", {"raw": f"Authorization: Basic {_b64(USER_PASS)}\n"}),
    Sample("basic auth lower-case scheme", {"notes": "basic " + _b64("admin:" + _rand(ALNUM, 12))}),
    Sample("base64 of a github token", {"notes": _b64(GHP)}),
    Sample("base64 of an aws key id", {"notes": f"id={_b64(AWS)}"}),
    Sample("urlsafe base64 of a stripe key", {"notes": _b64url(STRIPE.encode())}),
    Sample("base64 of a dsn with a password", {"notes": _b64(URL_CREDS)}),
    Sample(
        "base64 of an .env file",
        {"file": _b64(f"AWS_ACCESS_KEY_ID={AWS}\nAWS_REGION=eu-west-1\nDEBUG=0\n")},
    ),
    Sample("base64 of a pem, line-wrapped", {"file": _wrapped(PEM.encode())}),
    Sample("base64 of base64 of a token", {"notes": _b64(_b64(GHO))}),
    Sample("base64 of a random token", {"notes": _b64(RANDOM_B64)}),
    Sample("headerless pkcs8 ec key, wrapped at 64", {"key_file": _wrapped(EC_DER, 64)}),
    Sample("headerless pkcs8 ed25519 key", {"notes": _b64(ED_DER)}),
    Sample("headerless encrypted pkcs8 key", {"key_file": _wrapped(EC_ENCRYPTED_DER, 64)}),
    # fullwidth and other compatibility forms
    Sample("fullwidth github token", {"notes": _fullwidth(GHP)}),
    Sample("fullwidth aws key id", {"notes": "key: " + _fullwidth(AWS)}),
    Sample("fullwidth stripe key", {"notes": _fullwidth(STRIPE)}),
    Sample("fullwidth jwt", {"notes": _fullwidth(JWT)}),
    Sample("fullwidth field name", {_fullwidth("password"): "hunter2"}),
    # zero-width characters
    Sample("github token with zero-width spaces", {"notes": _groups(GHP, 5, "\u200b")}),
    Sample("aws key id with zero-width joiners", {"notes": _groups(AWS, 4, "\u200d")}),
    Sample("jwt with a byte-order mark inside", {"notes": JWT[:20] + "\ufeff" + JWT[20:]}),
    # split and spaced
    Sample("aws key id in groups of four", {"notes": f"key {_groups(AWS, 4, ' ')} thanks"}),
    Sample("aws key id split by dashes", {"notes": _groups(AWS_TEMP, 5, "-")}),
    Sample("github token in groups", {"notes": _groups(GHP, 6, " ")}),
    Sample("github token broken over lines", {"body": f"token:\n{GHP[:30]}\n{GHP[30:]}\nbye"}),
    Sample("fine-grained token broken over lines", {"body": _groups(GH_PAT, 40, "\n")}),
    Sample("stripe key split by dashes", {"notes": _groups(STRIPE, 8, "-")}),
    Sample("stripe key split by spaces", {"notes": "sk" + "_live_ " + _groups(STRIPE[8:], 4, " ")}),
    Sample("long restricted key split", {"notes": _groups(STRIPE_LONG, 33, "\n")}),
    Sample("slack token split by spaces", {"notes": _groups(SLACK, 10, " ")}),
    Sample("google key split", {"notes": _groups(GOOGLE, 13, " ")}),
    Sample("jwt broken over lines", {"body": _groups(JWT, 60, "\n")}),
    Sample("jwt spaced around the dots", {"notes": JWT.replace(".", " . ")}),
    Sample("pem header broken over lines", {"notes": PEM.replace("PRIVATE KEY", "PRIVATE\nKEY")}),
]


# --- must pass -------------------------------------------------------------------------

_S3 = (
    "https://reports.s3.eu-west-1.amazonaws.com/2024/q2.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={AWS}%2F20240501%2Feu-west-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240501T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={_rand(HEX, 64)}"
)
_S3_TEMP = _S3.replace(AWS, AWS_TEMP) + "&X-Amz-Security-Token=" + _rand(ALNUM + "%", 300)
_S3_V2 = (
    f"https://bucket.s3.amazonaws.com/a.png?AWSAccessKeyId={AWS}&Expires=1714567890"
    f"&Signature={_rand(ALNUM, 27)}%2B{_rand(ALNUM, 6)}%3D"
)
_GCS = (
    "https://storage.googleapis.com/bucket/report.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=signer%40project.iam.gserviceaccount.com%2F20240501%2Fauto%2Fstorage"
    "%2Fgoog4_request&X-Goog-Date=20240501T120000Z&X-Goog-Expires=900"
    f"&X-Goog-SignedHeaders=host&X-Goog-Signature={_rand(HEX, 512)}"
)
_AZURE = (
    "https://acct.blob.core.windows.net/c/report.pdf?sv=2022-11-02&ss=b&srt=o&sp=r"
    "&se=2024-05-02T12:00:00Z&st=2024-05-01T12:00:00Z&spr=https"
    f"&sig={_rand(ALNUM, 20)}%2F{_rand(ALNUM, 20)}%3D"
)
_CLOUDFRONT = (
    "https://d111111abcdef8.cloudfront.net/video.mp4?Expires=1714567890"
    f"&Signature={_rand(ALNUM, 80)}~{_rand(ALNUM, 60)}__&Key-Pair-Id=K2JCJMDEHXQW5F"
)

PASS: list[Sample] = [
    # images, as the base64 command writes them and as data URLs
    Sample("png wrapped at 76", {"image_base64": _wrapped(PNG)}),
    Sample("png wrapped at 64", {"image_base64": _wrapped(PNG, 64)}),
    Sample("jpeg wrapped with crlf", {"image_base64": _wrapped(JPEG, 76, "\r\n")}),
    Sample("gif wrapped at 76", {"image_base64": _wrapped(GIF)}),
    Sample("webp wrapped at 76", {"image_base64": _wrapped(WEBP)}),
    Sample("png on one line", {"image_base64": _b64(PNG)}),
    Sample("png data url", {"avatar": _data_url("image/png", TINY_PNG)}),
    Sample("gif data url", {"html": f'<img src="{_data_url("image/gif", TINY_GIF)}" alt="">'}),
    Sample("jpeg data url", {"thumb": _data_url("image/jpeg", SMALL_JPEG)}),
    Sample("webp data url", {"thumb": _data_url("image/webp", SMALL_WEBP)}),
    Sample("tiny png, bare", {"pixel": _b64(TINY_PNG)}),
    Sample("data url, wrapped", {"img": "data:image/png;base64,\n" + _wrapped(PNG)}),
    Sample("png wrapped at 50", {"image_base64": _wrapped(PNG, 50)}),
    Sample(
        "data url wrapped as a whole", {"img": _groups(_data_url("image/jpeg", JPEG), 76, "\n")}
    ),
    Sample("images in a list", {"attachments": [_wrapped(JPEG), _b64(SMALL_WEBP)]}),
    # public key material
    Sample("pem certificate", {"ca_bundle": CERT_PEM}),
    Sample("pem certificate chain", {"ca_bundle": CERT_PEM + CERT_PEM}),
    Sample("pem public key", {"webhook_key": PUBLIC_PEM}),
    Sample("ssh public key", {"deploy_key": SSH_PUBLIC + " ci@example.com"}),
    # digests, bare and labelled
    Sample("md5 hex", {"notes": hashlib.md5(b"a").hexdigest()}),  # noqa: S324 - a sample digest
    Sample("sha1 hex", {"ref": hashlib.sha1(b"b").hexdigest()}),  # noqa: S324 - a sample digest
    Sample("sha224 hex", {"v": hashlib.sha224(b"c").hexdigest()}),
    Sample("sha256 hex", {"notes": hashlib.sha256(b"d").hexdigest()}),
    Sample("sha384 hex", {"v": hashlib.sha384(b"e").hexdigest()}),
    Sample("sha512 hex", {"v": hashlib.sha512(b"f").hexdigest()}),
    Sample("sha256 hex upper-case", {"v": hashlib.sha256(b"g").hexdigest().upper()}),
    Sample("content-md5 base64", {"md": _b64(hashlib.md5(b"h").digest())}),  # noqa: S324
    Sample("sha1 base64", {"x": _b64(hashlib.sha1(b"i").digest())}),  # noqa: S324
    Sample("sha256 base64", {"x": _b64(hashlib.sha256(b"j").digest())}),
    Sample("sha512 base64", {"x": _b64(hashlib.sha512(b"k").digest())}),
    Sample("git commit in prose", {"notes": f"fixed in {hashlib.sha1(b'l').hexdigest()}, see PR"}),  # noqa: S324
    Sample("digest in a file name", {"file": f"backup-{hashlib.sha256(b'm').hexdigest()}.tar.gz"}),
    Sample(
        "digests in a list", {"files": [hashlib.sha256(bytes([i])).hexdigest() for i in range(4)]}
    ),
    Sample("sri integrity", {"v": "sha384-" + _b64(hashlib.sha384(b"n").digest())}),
    # order numbers and invoice references
    Sample("order number", {"notes": "Order ORD-2024-000123-ABCD shipped"}),
    Sample("order reference", {"ref": "ORD-" + _rand(UPPER36, 24)}),
    Sample("invoice number", {"subject": "Invoice INV-2024-" + _rand(UPPER36, 20) + " is due"}),
    Sample("invoice no.", {"notes": "invoice no. " + _rand(UPPER36, 26)}),
    Sample("purchase order", {"po": "PO#" + _rand(UPPER36, 25)}),
    Sample("stripe invoice id", {"invoice": "in_" + _rand(ALNUM, 24)}),
    Sample("stripe payment intent", {"notes": "refund pi_" + _rand(ALNUM, 24) + " today"}),
    Sample("stripe customer", {"customer": "cus_" + _rand(ALNUM, 24)}),
    Sample("order id field", {"order_id": _rand(UPPER36, 28)}),
    Sample("invoice number field", {"invoiceNumber": _rand(ALNUM, 30)}),
    Sample("booking reference field", {"booking": {"reference": _rand(B64URL, 32)}}),
    Sample(
        "marketplace order",
        {"order": "112-" + _rand(string.digits, 7) + "-" + _rand(string.digits, 7)},
    ),
    # presigned URLs
    Sample("s3 presigned url", {"download": _S3}),
    Sample("s3 presigned url, temporary credentials", {"download": _S3_TEMP}),
    Sample("s3 v2 presigned url", {"download": _S3_V2}),
    Sample("gcs signed url", {"download": _GCS}),
    Sample("azure sas url", {"download": _AZURE}),
    Sample("cloudfront signed url", {"video": _CLOUDFRONT}),
    # ordinary text that the new detectors must not mistake
    Sample("uppercase prose near an aws prefix", {"notes": "ASIA PACIFIC SALES TEAM 2024 REVIEW"}),
    Sample(
        "prose about token prefixes",
        {"notes": "sk" + "_live_ keys and gh" + "p_ tokens never go in notes"},
    ),
    Sample("prose after a slack prefix", {"notes": "xox" + "b- tokens belong to bots, not people"}),
    Sample("prose with eyJ across words", {"notes": "They Joined the team. Then we left. Bye"}),
    Sample("basic as a word", {"notes": "Basic information about the plan: call me"}),
    Sample("base64 of prose", {"blob": _b64("The quick brown fox jumps over the lazy dog")}),
    Sample("base64 of json", {"state": _b64(json.dumps({"page": 2, "sort": "name"}))}),
    Sample("fullwidth prose", {"notes": _fullwidth("Hello, world! Order 42 ships today.")}),
    Sample("uuids", {"ids": [str(uuid.UUID(int=_rng.getrandbits(128))) for _ in range(3)]}),
    Sample("stripe publishable key", {"pk": "pk" + "_live_" + _rand(ALNUM, 24)}),
    Sample("code identifiers", {"code": "AbstractSingletonProxyFactoryBean2 user_profile_v2"}),
    Sample("parcel tracking number", {"notes": "tracking 1Z" + _rand(UPPER36, 16)}),
]
