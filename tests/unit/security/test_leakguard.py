"""Leak guard: secret-looking values outside declared secret fields are found, prose is not.

Every credential sample is assembled at run time from harmless parts, so no
real-looking secret literal sits in this file (and secret scanners stay quiet).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security import leak_formats
from security.errors import InputRejectedError, LeakDetectedError
from security.leakguard import DEFAULT_MAX_DEPTH, Finding, check, scan

RNG_SEED = 20240501


def _rand(alphabet: str, n: int, seed: int) -> str:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not key material
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"


def _jwt() -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": "client-1", "exp": 1700000000}).encode())
    return f"{header}.{claims}.{_rand(B64URL, 43, 1)}"


SAMPLES: dict[str, list[str]] = {
    "aws_access_key_id": ["AKIA" + "IOSFODNN7EXAMPLE", "id=" + "ASIA" + "Y34FZKBOKMUTVV7A;"],
    "github_token": [
        *("gh" + p + "_" + _rand(ALNUM, 36, i) for i, p in enumerate("pousr")),
        "github" + "_pat_" + _rand(ALNUM + "_", 82, 9),
    ],
    "stripe_key": [
        "sk" + "_live_" + _rand(ALNUM, 24, 2),
        "rk" + "_live_" + _rand(ALNUM, 24, 3),
        "key: " + "sk" + "_test_" + _rand(ALNUM, 24, 4),
    ],
    "slack_token": [
        "xox" + "b-" + "1234567890-0987654321-" + _rand(ALNUM, 24, 5),
        "xox" + "p-" + "1234567890-0987654321-" + _rand(ALNUM, 24, 6),
        "xa" + "pp-1-" + "A0123456789-" + _rand(ALNUM, 40, 7),
    ],
    "slack_webhook": [
        "https://hooks." + "slack.com/services/" + "T00000000/B00000000/" + _rand(ALNUM, 24, 8)
    ],
    "google_api_key": ["AI" + "za" + "Sy" + _rand(B64URL, 33, 10)],
    "private_key_block": [
        f"-----BEGIN {kind}-----\nMIIEvQIBADANBg\n-----END {kind}-----"
        for kind in (
            "RSA " + "PRIVATE KEY",
            "EC " + "PRIVATE KEY",
            "OPENSSH " + "PRIVATE KEY",
            "ENCRYPTED " + "PRIVATE KEY",
            "PRIVATE " + "KEY",
            "PGP " + "PRIVATE KEY BLOCK",
        )
    ],
    "jwt": [_jwt(), "Bearer " + _jwt()],
    "url_credentials": [
        "https://alice:" + "pa55word" + "@example.com/path",
        "redis://:" + "s3cret" + "@cache.internal:6379/0",
        "see postgres://app:" + "pw" + "@db/app for details",
    ],
    "high_entropy": [
        _rand(B64URL, 40, 11),
        "token " + _rand(ALNUM, 32, 12) + " expires soon",
        _rand("0123456789abcdef", 48, 13),  # not a digest length (32/40/56/64/96/128)
        _rand(string.ascii_lowercase + string.digits, 40, 14),
        base64.b64encode(bytes(range(1, 31))).decode(),  # decodes, but to control bytes
    ],
}


@pytest.mark.parametrize(
    ("kind", "value"),
    [(kind, value) for kind, values in SAMPLES.items() for value in values],
)
def test_scan_finds_each_known_format(kind: str, value: str) -> None:
    """Each real-format sample in an ordinary field is reported with its kind."""
    assert scan({"notes": value}) == [Finding("notes", kind)]


@pytest.mark.parametrize(
    ("alphabet", "n"),
    [(B64URL, 24), (B64URL, 32), (B64URL, 64), (ALNUM + "+/", 40), ("0123456789abcdef", 48)],
)
def test_scan_finds_nearly_all_random_tokens(alphabet: str, n: int) -> None:
    """At least 95% of random tokens of a given length and alphabet (not a digest's) are flagged."""
    found = sum(bool(scan({"v": _rand(alphabet, n, RNG_SEED + i)})) for i in range(200))
    assert found >= 190


def test_scan_walks_nested_dicts_and_lists_with_dotted_paths() -> None:
    """Findings carry dotted paths with list indices, in payload order."""
    payload = {
        "a": {"b": [{"c": "fine"}, {"c": SAMPLES["jwt"][0]}]},
        "d": ("x", SAMPLES["aws_access_key_id"][0]),
        "n": [1, 2.5, None, True],
    }
    assert scan(payload) == [Finding("a.b.1.c", "jwt"), Finding("d.1", "aws_access_key_id")]


def test_scan_of_a_bare_string_names_the_root() -> None:
    """A payload that is itself a string is reported as <root>."""
    assert scan(SAMPLES["jwt"][0]) == [Finding("<root>", "jwt")]


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "api_key",
        "apiKey",
        "APIKEY",
        "X-Api-Key",
        "token",
        "access_token",
        "refreshToken",
        "private_key",
        "credentials",
        "auth",
        "Authorization",
        "client_secret",
        "smtpPassword",
        "db-passphrase",
        "aws_secret_access_key",
    ],
)
def test_scan_flags_suspicious_field_names_with_a_value(name: str) -> None:
    """A field whose name says secret and that holds a non-empty string is reported."""
    assert scan({"cfg": {name: "hunter2"}}) == [Finding(f"cfg.{name}", "secret_field_name")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("password", ""),
        ("password", "   "),
        ("token", None),
        ("secret", 42),
        ("password_hint", "your pet's name"),
        ("token_type", "Bearer"),
        ("auth_method", "oauth2"),
        ("token_url", "https://auth.example.com/oauth/token"),
        ("author", "Ada Lovelace"),
        ("max_tokens", "500"),
        ("secretary", "Bob"),
        ("key", "color"),
        ("__", "no words in this name"),
    ],
)
def test_scan_leaves_harmless_names_and_empty_values_alone(name: str, value: Any) -> None:
    """Empty or non-string values, names about a secret, and look-alike words pass."""
    assert scan({name: value}) == []


def test_scan_flags_a_value_paired_with_a_secret_name() -> None:
    """{"name": "Authorization", "value": ...} is a secret header even under a plain key."""
    payload = {
        "headers": [
            {"name": "Content-Type", "value": "text/plain"},
            {"name": "Authorization", "value": "Basic dXNlcjpwYXNz"},
            {"key": "X-Api-Key", "value": "abc"},
            {"name": 7, "value": "x"},
        ]
    }
    assert scan(payload) == [
        Finding("headers.1.value", "secret_field_name"),
        Finding("headers.2.value", "secret_field_name"),
    ]


def test_scan_skips_declared_secret_fields_and_their_subtrees() -> None:
    """Declared paths (with '*') are the vault's business; nothing below them is scanned."""
    payload = {
        "smtp": {"host": "mail.example.com", "password": SAMPLES["github_token"][0]},
        "headers": [{"name": "Authorization", "value": "Bearer " + _jwt()}],
        "credentials": {"key": SAMPLES["aws_access_key_id"][0], "nested": {"token": "x"}},
        "notes": "ok",
    }
    declared = ["smtp.password", "headers.*.value", "credentials"]
    assert scan(payload, secret_paths=declared) == []
    assert len(scan(payload)) == 4


def test_scan_declared_path_must_match_exactly() -> None:
    """A declared path covers its own field, not a sibling or a shorter path."""
    payload = {"smtp": {"password": "x", "token": "y"}}
    assert scan(payload, secret_paths=["smtp.password", "smtp.password.extra", "smtp.tok"]) == [
        Finding("smtp.token", "secret_field_name")
    ]


def test_scan_never_puts_a_secret_key_name_in_a_path() -> None:
    """A key that is itself a credential is reported as <key>, and so are paths below it."""
    aws = SAMPLES["aws_access_key_id"][0]
    findings = scan({"map": {aws: {"note": _jwt()}}})
    assert findings == [
        Finding("map.<key>", "aws_access_key_id"),
        Finding("map.<key>.note", "jwt"),
    ]
    assert aws not in repr(findings)


def test_scan_name_check_wins_over_value_checks_once_per_field() -> None:
    """A field is reported once even if both its name and its value look secret."""
    assert scan({"password": SAMPLES["jwt"][0]}) == [Finding("password", "secret_field_name")]


def test_scan_refuses_payloads_nested_deeper_than_the_cap() -> None:
    """Past max_depth the scan fails closed instead of skipping or recursing forever."""
    payload: dict[str, Any] = {}
    node = payload
    for _ in range(DEFAULT_MAX_DEPTH + 1):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InputRejectedError) as info:
        scan(payload)
    assert info.value.reason == "too_deep"
    assert scan({"a": {"b": "c"}}, max_depth=2) == []
    with pytest.raises(InputRejectedError):
        scan({"a": {"b": ["c"]}}, max_depth=2)


# --- things that must NOT be flagged ---------------------------------------------------

PROSE = (
    "Antidisestablishmentarianism is a famously long word; so is "
    "pneumonoultramicroscopicsilicovolcanoconiosis. The quick brown fox jumps over the "
    "lazy dog! Please move the internationalization review to Thursday afternoon. "
    "Our ConfigurationManagerFactoryBean and AbstractSingletonProxyFactoryBean2 classes "
    "need refactoring, see ticket PROJ-12345 and the user_profile_picture_thumbnail_v2 "
    "table. Order ORD-2024-000123-ABCD shipped; call +1-202-555-0143 with questions."
)


@pytest.mark.parametrize(
    "payload",
    [
        {"body": PROSE},
        {"subject": "Quarterly report", "lines": PROSE.split(". ")},
        {"id": str(uuid.uuid4()), "ids": [str(uuid.uuid4()) for _ in range(5)]},
        {"ref": f"task-{uuid.uuid4()}-{uuid.uuid4().hex[:8]}"},
        {"checksum": hashlib.sha256(b"report.pdf").hexdigest()},
        {"sha256": hashlib.sha256(b"a").hexdigest(), "md5": hashlib.md5(b"a").hexdigest()},  # noqa: S324 - a sample digest, not security
        {"file": {"contentHash": hashlib.sha1(b"b").hexdigest()}},  # noqa: S324 - a sample digest
        {"checksums": [hashlib.sha512(b"c").hexdigest(), hashlib.sha256(b"d").hexdigest()]},
        {"image": "registry.example.com/app@sha256:" + hashlib.sha256(b"e").hexdigest()},
        {"integrity": "sha384-" + base64.b64encode(hashlib.sha384(b"f").digest()).decode()},
        {"commit": hashlib.sha1(b"g").hexdigest()},  # noqa: S324 - a sample digest
        {"url": "https://example.com/a/very-long-path/with_segments/index.html?page=2&q=x"},
        {"urls": ["ssh://git@github.com/org/repo.git", "https://example.com:8443/x"]},
        {"to": "firstname.lastname@example.com", "cc": ["a.b+tag@sub.example.org"]},
        {"when": "2024-05-01T12:34:56.789+00:00", "dates": ["2024-05-01", "20240501T123456Z"]},
        {"blob": base64.b64encode(b"The quick brown fox jumps over").decode()},
        {"blob": _b64url("héllo wörld, how are you today?".encode())},
        {
            "data": base64.b64encode(
                b"".join(hashlib.sha256(bytes([i])).digest() for i in range(20))
            ).decode()
        },
        {"account": "12345678901234567890123456789012"},
        {"const": "SOME_CONSTANT_NAME_WITH_DIGITS_2024", "id": "test_from_openssl_sha384"},
        {"n": 1, "f": 2.5, "b": True, "none": None, "empty": "", "list": []},
    ],
)
def test_scan_leaves_ordinary_values_alone(payload: Any) -> None:
    """Prose, UUIDs, labelled digests, plain URLs, emails, dates, encoded text and blobs pass."""
    assert scan(payload) == []


def test_digest_field_names_do_not_excuse_known_formats() -> None:
    """Only the entropy test is relaxed for digest fields; a key format is still found."""
    assert scan({"checksum": SAMPLES["aws_access_key_id"][0]}) == [
        Finding("checksum", "aws_access_key_id")
    ]


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"])
def test_bare_hex_digests_pass_in_any_field(algorithm: str) -> None:
    """A digest-length hex string in a plain field is a digest, not a key, in either case."""
    value = hashlib.new(algorithm, b"x").hexdigest()
    assert scan({"notes": value, "upper": value.upper(), "list": [f"fixed in {value}"]}) == []


def test_digest_shaped_hex_called_a_key_is_flagged() -> None:
    """A digest-length hex string right after a credential word is still reported as a key."""
    value = hashlib.sha256(b"x").hexdigest()
    assert scan({"notes": f"api key: {value}"}) == [Finding("notes", "high_entropy")]
    assert scan([f"token={value}"]) == [Finding("0", "high_entropy")]


# --- check -----------------------------------------------------------------------------


def test_check_passes_a_clean_payload() -> None:
    """No finding, no exception."""
    check({"body": PROSE, "smtp": {"password": "x"}}, secret_paths=["smtp.password"])


def test_check_raises_for_the_first_finding_without_the_value() -> None:
    """The error names the field and the kind; neither str nor repr holds the value."""
    value = SAMPLES["stripe_key"][0]
    with pytest.raises(LeakDetectedError) as info:
        check({"a": "fine", "b": {"c": value}, "d": SAMPLES["jwt"][0]})
    err = info.value
    assert err.field == "b.c"
    assert err.reason == "leak_detected"
    assert "'b.c'" in str(err)
    assert "stripe_key" in str(err)
    for text in (str(err), repr(err), repr(err.args)):
        assert value not in text
        assert value[8:] not in text


def test_findings_never_hold_the_value() -> None:
    """Finding has only the path and the kind."""
    value = SAMPLES["github_token"][0]
    [finding] = scan({"x": value})
    assert value not in repr(finding)
    assert value not in str(finding)


@pytest.mark.parametrize("prefix", leak_formats.PREFIXES)
def test_prefix_pattern_finds_every_literal_prefix(prefix: str) -> None:
    """The factored pre-check pattern matches each prefix wherever it sits in the text."""
    assert leak_formats.ANY_PREFIX.search(f"plain words {prefix} more words")


# Whole prefixes, their near misses (every cut-off and one-letter-short form) and filler.
_PIECES = sorted(
    {p[i:j] for p in leak_formats.PREFIXES for i in range(2) for j in range(len(p) - 2, len(p) + 1)}
    | set("-_:/. aAghkx")
)


@given(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join))
def test_prefix_pattern_agrees_with_the_prefix_list(text: str) -> None:
    """The pattern says "some prefix occurs" exactly when one of the literal prefixes does."""
    expected = any(prefix in text for prefix in leak_formats.PREFIXES)
    assert bool(leak_formats.ANY_PREFIX.search(text)) is expected


def test_every_prefix_leads_to_a_format_and_every_format_has_a_prefix() -> None:
    """The prefix table routes each literal prefix to one known format, and misses none."""
    kinds = {fmt.kind for fmt in leak_formats._FORMATS}
    assert set(leak_formats._PREFIX_KIND) == set(leak_formats.PREFIXES)
    assert set(leak_formats._PREFIX_KIND.values()) == kinds
