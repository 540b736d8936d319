"""CORS: none unless origins are configured; then only those origins, on every route.

The submit routes are answered by the fast lane (``gateway/http/fastlane.py``), which sits
inside the CORS middleware: a configured origin gets its headers there too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from security.keystore import KeyRing
from tests.support.api import mint
from tests.support.gateways import ApiClient

pytestmark = pytest.mark.integration

ORIGIN = "https://app.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}


def test_no_cors_headers_unless_origins_are_configured(make_client: Any) -> None:
    """The session gateway lists no origin: a preflight is not answered for CORS and a
    cross-origin submission gets no Access-Control-* header (browsers refuse to read it)."""
    client: ApiClient = make_client()
    with client.http() as http:
        preflight = http.options("/v1/tasks/test.other", headers=PREFLIGHT)
        submitted = http.post(
            "/v1/tasks/test.other", json={"note": "cors"}, headers={"Origin": ORIGIN}
        )
    assert submitted.status_code == 202
    for response in (preflight, submitted):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_configured_origins_get_cors_headers_including_the_submit_lane(
    stack_env: dict[str, str],
    keyring: KeyRing,
    make_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an origin configured, its preflight is allowed and a submission through the fast
    lane carries Access-Control-Allow-Origin; another origin gets neither."""
    for key, value in stack_env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    app = create_app(GatewaySettings(cors_origins=[ORIGIN]), keys=keyring)
    client: ApiClient = make_client()
    auth = {"Authorization": f"Bearer {mint(keyring, client.client_id)}"}

    async def exchange() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://gw") as http:
                return [
                    await http.options("/v1/tasks/test.other", headers=PREFLIGHT),
                    await http.options(
                        "/v1/tasks/test.other",
                        headers={**PREFLIGHT, "Origin": "https://elsewhere.example"},
                    ),
                    await http.post(
                        "/v1/tasks/test.other",
                        json={"note": "cors"},
                        headers={**auth, "Origin": ORIGIN},
                    ),
                    await http.post(
                        "/v1/tasks/test.other",
                        json={"note": "cors"},
                        headers={**auth, "Origin": "https://elsewhere.example"},
                    ),
                ]

    allowed, refused, submitted, foreign = asyncio.run(exchange())
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert submitted.status_code == 202
    assert submitted.headers["access-control-allow-origin"] == ORIGIN
    assert foreign.status_code == 202  # CORS is for browsers; the token decides access
    assert "access-control-allow-origin" not in foreign.headers
