"""Refusals over real HTTPS: 413 and 422 as problem+json that never echo what was refused.

The leak guard both ways: credentials in disguise are refused, a wrapped base64 image is not.

Also the request id: generated when absent, echoed when well formed, replaced when not.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from security.keystore import KeyRing
from tests.support.api import assert_problem, forget_token_limits, mint
from tests.support.gateways import Gateway
from workers.contract.wire import owner_index

pytestmark = pytest.mark.integration

SUBMIT = "/v1/tasks/test.touch"
CAP = 64 * 1024  # test.touch keeps the catalogue's default max_payload_bytes
# Built from parts so no credential-shaped literal sits in the source tree.
AWS_KEY = "AK" + "IA" + "IOSFODNN7" + "EXAMPLE"
SECRET = "s3cr3t-" + "Value-" + "9f8e7d6c5b4a"
GH_TOKEN = "gh" + "p_" + "Zq7RkW2mXv9TbL4nYc8HdJ3fGs6PaE1uKo5V"


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


@pytest.fixture
def client_id(make_client: Any) -> str:
    return str(make_client().client_id)


@pytest.fixture
def http(gateway_server: Gateway, keyring: KeyRing, client_id: str) -> Iterator[httpx.Client]:
    """An HTTPS client for a fresh client with every task scope."""
    token = mint(keyring, client_id)
    with gateway_server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def _nothing_queued(redis_client: redis.Redis, client_id: str) -> None:
    assert redis_client.zcard(owner_index(client_id)) == 0


def test_body_over_the_cap_with_content_length_is_413(
    http: httpx.Client, redis_client: redis.Redis, client_id: str
) -> None:
    """A declared Content-Length over the task's cap is refused with 413 before parsing."""
    body = json.dumps({"note": "x" * CAP}).encode()
    response = http.post(SUBMIT, content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 413)
    assert str(CAP) in problem["detail"]
    _nothing_queued(redis_client, client_id)


def test_chunked_body_over_the_cap_is_413(
    http: httpx.Client, redis_client: redis.Redis, client_id: str
) -> None:
    """A chunked body (no Content-Length) that grows past the cap is cut off with 413."""

    def chunks() -> Iterator[bytes]:
        yield b'{"note": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    response = http.post(SUBMIT, content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413)
    _nothing_queued(redis_client, client_id)


def test_chunked_body_under_the_cap_is_accepted(http: httpx.Client) -> None:
    """The control: the same chunked upload under the cap is accepted."""

    def chunks() -> Iterator[bytes]:
        yield b'{"note": "'
        yield b"x" * 1000
        yield b'"}'

    response = http.post(SUBMIT, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text


def test_unauthenticated_oversized_body_is_413_before_auth(gateway_server: Gateway) -> None:
    """The cap holds before authentication: nobody gets to make the gateway buffer a big body."""
    with gateway_server.client() as http:
        response = http.post(SUBMIT, content=b"x" * (CAP + 1))
    assert_problem(response, 413)


def test_unknown_field_is_422_naming_it(
    http: httpx.Client, redis_client: redis.Redis, client_id: str
) -> None:
    """An unknown field is refused (extra=forbid) and the error names the field."""
    response = http.post(SUBMIT, json={"note": "hi", "colour": "blue-ish-value"})
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["colour"]
    assert "blue-ish-value" not in response.text
    _nothing_queued(redis_client, client_id)


def test_wrong_type_is_422_naming_the_field(http: httpx.Client) -> None:
    """A number where a string belongs is refused, naming the field, not echoing the value."""
    response = http.post(SUBMIT, json={"note": 987654321})
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["note"]
    assert "987654321" not in response.text


@pytest.mark.parametrize(
    "payload",
    [{"note": 987654321}, {"note": ["a"]}, {"note": {"deep": 1}}, {}, {"note": None}],
    ids=["number", "list", "object", "missing", "null"],
)
def test_422_errors_name_field_paths_and_kinds_only(http: httpx.Client, payload: object) -> None:
    """Each error is {field, kind, message} from a fixed table: no pydantic text, no repr."""
    response = http.post(SUBMIT, json=payload)
    problem = assert_problem(response, 422)
    for error in problem["errors"]:
        assert set(error) == {"field", "kind", "message"}
        assert error["kind"] != "invalid"
    for internal in ("Input should", "0x", "<", "pydantic", "errors.pydantic.dev", "type="):
        assert internal not in response.text


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1, 2]", b'"just a string"', b'{"note": NaN}', b'{"note": "a", "note": "b"}'],
    ids=["truncated", "array", "string", "nan", "duplicate-key"],
)
def test_malformed_json_is_422(http: httpx.Client, body: bytes) -> None:
    """Bodies that are not one well-formed JSON object are refused as problem+json."""
    response = http.post(SUBMIT, content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 422)


def test_credential_in_a_plain_field_is_422_without_echo(
    http: httpx.Client, redis_client: redis.Redis, client_id: str
) -> None:
    """An AWS-key-shaped value in `note` is refused by the leak guard, naming `note` only."""
    response = http.post(SUBMIT, json={"note": f"here is my key {AWS_KEY} ok"})
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("leak-detected")
    assert [e["field"] for e in problem["errors"]] == ["note"]
    assert AWS_KEY not in response.text
    assert AWS_KEY[4:] not in response.text
    _nothing_queued(redis_client, client_id)


@pytest.mark.parametrize(
    "note",
    [
        "Authorization: Basic " + base64.b64encode(b"deploy:" + SECRET.encode()).decode(),
        "token " + "".join(chr(ord(c) + 0xFEE0) for c in GH_TOKEN),  # fullwidth
        "token " + " ".join(GH_TOKEN[i : i + 6] for i in range(0, len(GH_TOKEN), 6)),
        base64.encodebytes(f"export GITHUB_TOKEN={GH_TOKEN}\n".encode()).decode(),
    ],
    ids=["basic-auth", "fullwidth", "spaced", "base64-wrapped"],
)
def test_disguised_credential_is_422_without_echo(
    http: httpx.Client, redis_client: redis.Redis, client_id: str, note: str
) -> None:
    """Base64, fullwidth and spaced credentials are refused too, naming `note` only."""
    response = http.post(SUBMIT, json={"note": note})
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("leak-detected")
    assert [e["field"] for e in problem["errors"]] == ["note"]
    for needle in (GH_TOKEN[4:16], SECRET, note[-20:].strip()):
        assert needle not in response.text
    _nothing_queued(redis_client, client_id)


def test_line_wrapped_base64_image_is_accepted(http: httpx.Client) -> None:
    """A PNG as `base64` writes it (76-column lines) passes the leak guard: 202, not 422."""
    rng = random.Random(5)  # noqa: S311 - noise pixels, so the PNG does not compress away
    image = Image.new("RGB", (32, 32))
    image.putdata([(rng.randrange(256), rng.randrange(256), 0) for _ in range(32 * 32)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    wrapped = base64.encodebytes(out.getvalue()).decode()
    assert wrapped.count("\n") > 10
    response = http.post(SUBMIT, json={"note": wrapped})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "payload",
    [
        {"note": "hi", "token": SECRET, "unexpected": 1},
        {"note": 5, "token": SECRET},
        {"token": SECRET},
        {"note": "hi", "token": [SECRET]},
        {"note": "hi", "token": {"value": SECRET}},
    ],
    ids=["unknown-field-beside", "bad-type-beside", "missing-field-beside", "as-list", "as-object"],
)
def test_secret_value_is_never_echoed_in_a_422(http: httpx.Client, payload: dict[str, Any]) -> None:
    """Whatever makes the payload invalid, the secret it carried is not in the response."""
    response = http.post(SUBMIT, json=payload)
    assert_problem(response, 422)
    assert SECRET not in response.text
    assert "Value-9f8e" not in response.text


def test_request_id_is_generated_when_absent(gateway_server: Gateway) -> None:
    """Without X-Request-ID the gateway makes one up and returns it (success and error)."""
    with gateway_server.client() as http:
        ok = http.get("/healthz")
        refused = http.get("/v1/tasks")
    generated = ok.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert refused.headers["x-request-id"] != generated
    assert assert_problem(refused, 401)["request_id"] == refused.headers["x-request-id"]


@pytest.mark.parametrize("given", ["abc-123", "req.2024:07_x", "A" * 128])
def test_well_formed_request_id_is_echoed(gateway_server: Gateway, given: str) -> None:
    """A well-formed X-Request-ID comes back unchanged, and is the problem's request_id."""
    with gateway_server.client(headers={"X-Request-ID": given}) as http:
        ok = http.get("/healthz")
        refused = http.get("/v1/tasks")
    assert ok.headers["x-request-id"] == given
    assert refused.headers["x-request-id"] == given
    assert assert_problem(refused, 401)["request_id"] == given


@pytest.mark.parametrize(
    "given",
    ["has spaces in it", "x" * 300, "A" * 129, "semi;colon", "a/b", "<script>", 'quote"d'],
    ids=["spaces", "300-chars", "129-chars", "semicolon", "slash", "markup", "quote"],
)
def test_malformed_request_id_is_replaced(gateway_server: Gateway, given: str) -> None:
    """An X-Request-ID that is not 1-128 safe characters is replaced by a generated one."""
    with gateway_server.client(headers={"X-Request-ID": given}) as http:
        refused = http.get("/v1/tasks")
    replaced = refused.headers["x-request-id"]
    assert replaced != given
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert given not in refused.text
    assert assert_problem(refused, 401)["request_id"] == replaced


def test_one_request_id_header_even_when_the_client_sends_two(gateway_server: Gateway) -> None:
    """Duplicate X-Request-ID headers still produce exactly one X-Request-ID in the answer."""
    with gateway_server.client() as http:
        response = http.get(
            "/healthz", headers=[("X-Request-ID", "first-id"), ("X-Request-ID", "second-id")]
        )
    assert len(response.headers.get_list("x-request-id")) == 1


def test_unknown_route_is_problem_json(gateway_server: Gateway) -> None:
    """404 for an unknown path is problem+json with the headers."""
    with gateway_server.client() as http:
        assert_problem(http.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/tasks/catalog", "GET"),
        ("DELETE", "/v1/tasks/catalog", "GET"),
        ("PUT", "/v1/tasks/00000000-0000-4000-8000-000000000000", "DELETE, GET"),
        ("GET", SUBMIT, "POST"),
        ("PUT", "/v1/tasks", "GET"),
    ],
)
def test_wrong_method_is_405_listing_every_allowed_method(
    gateway_server: Gateway, method: str, path: str, allow: str
) -> None:
    """405 is problem+json and its Allow names every method served at that path, no other."""
    with gateway_server.client() as http:
        response = http.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


@pytest.mark.parametrize("cursor", ["nan", "NaN", "inf", "-inf", "-1", "abc", "1e999"])
def test_a_malformed_list_cursor_is_422_not_a_storage_error(
    http: httpx.Client, cursor: str
) -> None:
    """`?before=` takes a finite, non-negative number; anything else is the client's mistake."""
    response = http.get("/v1/tasks", params={"before": cursor})
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["query.before"]
