"""``POST /v1/token`` under abuse, over real HTTPS and a real TLS Redis.

Attackers are other loopback addresses (127.0.0.2-9): the client socket is bound to them, so
the gateway sees each as its own source. Nothing leaves 127.0.0.0/8; floods are bounded in
count and in time.
"""

from __future__ import annotations

import base64
import secrets
import ssl
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from certs.material import CertPaths
from tests.support.api import assert_problem, forget_token_limits
from tests.support.gateways import ApiClient, Gateway, extra_gateway
from tests.support.replies import as_bytes, as_fields, stream_range

pytestmark = pytest.mark.integration

ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]
LEGIT_SOURCE = "127.0.0.10"
FLOOD_THREADS_PER_SOURCE = 2
FLOOD_MAX_PER_THREAD = 60  # at most 8 * 2 * 60 = 960 requests
FLOOD_MAX_SECONDS = 60.0


@pytest.fixture(autouse=True)
def _fresh_db(redis_client: redis.Redis) -> Iterator[None]:
    """Start from an empty database; leave no token-limit counts for the tests after."""
    yield
    forget_token_limits(redis_client)


@pytest.fixture(scope="module")
def open_gateway(
    stack_env: dict[str, str], session_dir: Path, pki: CertPaths, tls_redis: Any
) -> Iterator[Gateway]:
    """A gateway with access logging on and the per-source limits out of the way, so every
    flood request reaches the secret check: only the hash gate stands between them."""
    env = stack_env | {
        "TASKGATE_TOKEN_RATE_LIMIT_IP": "100000/minute",
        "TASKGATE_TOKEN_FAILURE_LIMIT_IP": "100000/minute",
        "TASKGATE_TOKEN_FAILURE_LIMIT_CLIENT": "100000/minute",
    }
    with extra_gateway("gateway-open", env, session_dir, pki, log_level="info") as gateway:
        yield gateway


def _client_from(gateway: Gateway, source: str) -> httpx.Client:
    """An HTTPS client whose socket is bound to the loopback address ``source``."""
    ctx = ssl.create_default_context(cafile=str(gateway.ca_file))
    transport = httpx.HTTPTransport(verify=ctx, local_address=source)
    return httpx.Client(base_url=gateway.url, transport=transport, timeout=30.0)


def _grant(client_id: str, secret: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        **extra,
    }


def _timed_grant(http: httpx.Client, client: ApiClient) -> float:
    started = time.perf_counter()
    response = http.post("/v1/token", data=_grant(client.client_id, client.secret))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


class _Flood:
    """Wrong secrets for ``client_id`` from every attacker address until stopped or spent."""

    def __init__(self, gateway: Gateway, client_id: str) -> None:
        self.gateway, self.client_id = gateway, client_id
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(source,), daemon=True)
            for source in ATTACKERS
            for _ in range(FLOOD_THREADS_PER_SOURCE)
        ]

    def _run(self, source: str) -> None:
        deadline = time.monotonic() + FLOOD_MAX_SECONDS
        with _client_from(self.gateway, source) as http:
            for _ in range(FLOOD_MAX_PER_THREAD):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                guess = "tgs_" + secrets.token_urlsafe(32)
                try:
                    status = http.post("/v1/token", data=_grant(self.client_id, guess)).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.statuses[status] += 1

    def sent(self) -> int:
        with self.lock:
            return sum(self.statuses.values())

    def __enter__(self) -> _Flood:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=FLOOD_MAX_SECONDS)


def test_a_wrong_secret_flood_from_eight_sources_does_not_starve_a_legitimate_grant(
    open_gateway: Gateway, make_client: Any
) -> None:
    """While 8 other addresses flood the victim's id with wrong secrets, its grant from a
    clean address stays within a small multiple of its quiet time (both printed)."""
    victim: ApiClient = make_client()
    with _client_from(open_gateway, LEGIT_SOURCE) as http:
        _timed_grant(http, victim)  # warm up the connection and the process
        quiet = statistics.median(_timed_grant(http, victim) for _ in range(3))
        with _Flood(open_gateway, victim.client_id) as flood:
            while flood.sent() < 40 and not flood.stop.is_set():
                time.sleep(0.05)
            under_flood = statistics.median(_timed_grant(http, victim) for _ in range(3))
            sent_during = flood.sent()
        statuses = dict(flood.statuses)
    print(
        f"\nlegitimate grant: quiet {quiet:.3f} s, under flood {under_flood:.3f} s "
        f"({under_flood / quiet:.1f}x); flood requests {sent_during}, statuses {statuses}"
    )
    assert statuses.get(200, 0) == 0
    assert statuses.get(503, 0) > 0, statuses  # the gate refused work it had no slot for
    # Unguarded, the same flood took a grant from 0.3 s to 7.2 s; the margin absorbs a
    # 2-core machine shared with other work, not starvation.
    assert under_flood <= max(4 * quiet, quiet + 1.5), (quiet, under_flood, statuses)


def test_busy_answer_is_a_fast_503_with_retry_after(
    open_gateway: Gateway, make_client: Any
) -> None:
    """A refused secret check is 503 problem+json with Retry-After and error
    temporarily_unavailable, answered without waiting for a hash."""
    victim: ApiClient = make_client()
    busy: list[httpx.Response] = []
    with (
        _Flood(open_gateway, victim.client_id) as flood,
        _client_from(open_gateway, ATTACKERS[0]) as http,
    ):
        deadline = time.monotonic() + 20
        while not busy and time.monotonic() < deadline and not flood.stop.is_set():
            response = http.post("/v1/token", data=_grant(victim.client_id, "tgs_" + "x" * 40))
            if response.status_code == 503:
                busy.append(response)
    assert busy, "no 503 under a flood"
    problem = assert_problem(busy[0], 503)
    assert problem["error"] == "temporarily_unavailable"
    assert busy[0].headers["retry-after"] == "1"
    assert busy[0].elapsed.total_seconds() < 1.0


def test_a_client_under_a_guessing_attack_from_another_source_still_gets_its_token(
    gateway_server: Gateway, make_client: Any
) -> None:
    """Ten wrong guesses lock the id for the guessing address only (even with the right
    secret there); the client's own address still gets its token."""
    victim: ApiClient = make_client()
    attacker = ATTACKERS[1]
    with _client_from(gateway_server, attacker) as http:
        statuses = [
            http.post(
                "/v1/token", data=_grant(victim.client_id, f"tgs_wrong-{i:02d}" * 3)
            ).status_code
            for i in range(12)
        ]
        locked = http.post("/v1/token", data=_grant(victim.client_id, victim.secret))
    assert statuses == [401] * 10 + [429, 429]
    assert locked.status_code == 429
    with gateway_server.client() as http:  # 127.0.0.1: a source that never failed
        granted = http.post("/v1/token", data=_grant(victim.client_id, victim.secret))
    assert granted.status_code == 200, granted.text
    assert granted.json()["access_token"]


def _redis_text(client: redis.Redis) -> bytes:
    """Every key name and every value in the database, as one byte string."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(as_bytes(key))
        kind = client.type(key)
        if kind == b"string":
            out.append(as_bytes(client.get(key) or b""))
        elif kind == b"hash":
            out.extend(b"%s=%s" % kv for kv in as_fields(client.hgetall(key)).items())
        elif kind == b"list":
            out.extend(as_bytes(item) for item in client.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(as_bytes(member) for member in client.smembers(key))
        elif kind == b"zset":
            out.extend(as_bytes(member) for member in client.zrange(key, 0, -1))
        elif kind == b"stream":
            for _id, fields in stream_range(client, key):
                out.extend(b"%s=%s" % kv for kv in as_fields(fields).items())
    return b"\n".join(out)


def _aof_text(session_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (session_dir / "redis").rglob("*.aof*") if p.is_file())


def test_a_secret_typed_into_client_id_goes_nowhere(
    open_gateway: Gateway, redis_client: redis.Redis, session_dir: Path
) -> None:
    """A secret-looking client_id (form or Basic) is invalid_client and appears in no Redis
    key or value (audit stream included), not in the AOF and not in the gateway's log."""
    pasted = "tgs_" + secrets.token_urlsafe(32)
    basic = base64.b64encode(f"{pasted}:whatever-secret-value".encode()).decode()
    with open_gateway.client() as http:
        form = http.post("/v1/token", data=_grant(pasted, "whatever-secret-value"))
        header = http.post(
            "/v1/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
    for response in (form, header):
        assert assert_problem(response, 401)["error"] == "invalid_client"
    time.sleep(1.5)  # the AOF is fsynced every second; the audit batch is long written
    stored = _redis_text(redis_client)
    assert b"malformed_client_id" in stored  # audited, without the value
    assert pasted.encode() not in stored
    assert pasted.encode() not in _aof_text(session_dir)
    log = open_gateway.child.log_path.read_text(errors="replace")
    # The access line, as JSON (quotes escaped) or text.
    assert '"POST /v1/token HTTP/1.1" 401' in log.replace('\\"', '"')
    assert pasted not in log


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/token?client_secret={mark}"),
        ("GET", "/v1/tasks?access_token={mark}"),
        ("GET", "/healthz?Client%5FSecret={mark}"),
        ("GET", "/v1/tasks/catalog?limit=1&token={mark}"),
        ("POST", "/v1/tasks/test.touch?access_token={mark}"),  # the submit fast lane
    ],
)
def test_query_string_credentials_are_400_and_kept_out_of_the_access_log(
    open_gateway: Gateway, make_client: Any, method: str, path: str
) -> None:
    """A credential parameter in the query is refused with 400 on any route, and the access
    log line for it (and for a harmless query) shows the path without the query."""
    client: ApiClient = make_client()
    mark, harmless = secrets.token_hex(16), secrets.token_hex(16)
    url = path.format(mark=mark)
    with open_gateway.client() as http:
        if url.startswith("/v1/token"):
            refused = http.post(url, data=_grant(client.client_id, client.secret))
        else:
            refused = http.request(method, url, json={"note": "q"} if method == "POST" else None)
        control = http.get(f"/healthz?note={harmless}")
    problem = assert_problem(refused, 400)
    assert problem["type"].endswith("credentials-in-query")
    assert mark not in refused.text
    assert control.status_code == 200
    bare = url.split("?", 1)[0]
    log_path = open_gateway.child.log_path
    deadline = time.monotonic() + 5
    # The access line, as JSON (quotes escaped) or text.
    while f'"{method} {bare} HTTP/1.1" 400' not in log_path.read_text(errors="replace").replace(
        '\\"', '"'
    ):
        assert time.monotonic() < deadline, "no access line for the refused request"
        time.sleep(0.1)
    log = log_path.read_text(errors="replace")
    assert mark not in log
    assert harmless not in log
