"""/metrics answers allow-listed scrapers or the admin token, nobody else."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
import redis
from fastapi import FastAPI

import gateway.routes.metrics
from gateway.http.errors import install_error_handlers
from gateway.metrics import Metrics
from gateway.routes.metrics import build_metrics_router
from gateway.stores.operators import OperatorRegistry
from security.passwords import hash_admin_token, new_admin_token


async def _rendered(state: object) -> bytes:
    """Stands in for the deployment-wide scrape (Redis): these tests are about who gets in."""
    return b"# scraped\n"


def _app(allow: tuple[str, ...] = ()) -> tuple[FastAPI, str]:
    token = new_admin_token()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_metrics_router())
    app.state.gateway = SimpleNamespace(
        metrics=Metrics(),
        admin_token_hash=hash_admin_token(token),
        # the bootstrap admin is checked against its hash alone: no Redis, no state key
        operators=OperatorRegistry(None, None, admin_hash=hash_admin_token(token)),  # type: ignore[arg-type]
        settings=SimpleNamespace(metrics_allow=list(allow)),
    )
    return app, token


@pytest.fixture(autouse=True)
def _no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.routes.metrics, "render", _rendered)


def _client(app: FastAPI, peer: str = "203.0.113.5") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://gateway.test")


async def test_metrics_off_loopback_without_the_admin_token_is_401() -> None:
    """A remote caller without the admin token is refused with problem+json."""
    app, _ = _app()
    async with _client(app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_metrics_off_loopback_with_a_client_style_bearer_is_401() -> None:
    """A bearer that is not the admin token is refused too."""
    app, _ = _app()
    async with _client(app) as client:
        response = await client.get("/metrics", headers={"Authorization": "Bearer eyJ.a.b"})
    assert response.status_code == 401


async def test_metrics_off_loopback_with_the_admin_token_is_200() -> None:
    """The admin token opens /metrics from anywhere."""
    app, token = _app()
    async with _client(app) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.text == "# scraped\n"


async def test_metrics_on_loopback_without_an_allow_list_need_the_admin_token() -> None:
    """Loopback alone is not trusted: a reverse proxy on the same host would make it public."""
    app, _ = _app()
    async with _client(app, peer="127.0.0.1") as client:
        response = await client.get("/metrics")
    assert response.status_code == 401


async def test_an_allow_listed_scraper_needs_no_token() -> None:
    """A scraper inside TASKGATE_METRICS_ALLOW reads /metrics without credentials."""
    app, _ = _app(allow=("10.1.2.0/24",))
    async with _client(app, peer="10.1.2.9") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.text == "# scraped\n"


async def test_an_address_outside_the_allow_list_needs_the_admin_token() -> None:
    """Only the listed networks are let in, and X-Forwarded-For cannot claim to be one."""
    app, _ = _app(allow=("10.1.2.0/24",))
    async with _client(app, peer="203.0.113.5") as client:
        response = await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.9"})
    assert response.status_code == 401


async def test_an_unreachable_metrics_store_is_503_problem_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis down: 503 with Retry-After, as problem+json, naming nothing of the store."""

    async def unreachable(state: object) -> bytes:
        raise redis.ConnectionError("Error connecting to rediss://secret-host:6379")

    monkeypatch.setattr(gateway.routes.metrics, "render", unreachable)
    app, token = _app()
    async with _client(app) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert "secret-host" not in response.text
