"""The gateway's middleware runs in the order it is declared: the first entry outermost."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.errors import install_error_handlers
from gateway.http.fastlane import SubmitFastLane
from gateway.http.middleware import (
    BodySizeLimitMiddleware,
    QueryCredentialsMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    gateway_middleware,
    install_middleware,
)


class Tap:
    """Records ``name`` when a request reaches it, then passes the request on."""

    def __init__(self, app: ASGIApp, *, name: str, seen: list[str]) -> None:
        self.app = app
        self.name = name
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(self.name)
        await self.app(scope, receive, send)


async def _lane(request: object) -> Response:
    return PlainTextResponse("lane", status_code=202)


def _declared(app: FastAPI) -> list[Middleware]:
    return gateway_middleware(
        limit_for=lambda _scope: 1024,
        cors_origins=["https://app.example"],
        submit_endpoints={"/v1/tasks/lane": _lane},
        exception_handlers=app.exception_handlers,
    )


def _get(app: FastAPI, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            return await client.get(path)

    return asyncio.run(go())


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def test_a_request_passes_the_declared_middleware_in_declared_order() -> None:
    """A tap before each declared layer records the order a request reaches them: the
    declaration's, and every layer passes an ordinary request on to the next."""
    app = _app()
    seen: list[str] = []
    declared = _declared(app)
    names = [getattr(entry.cls, "__name__", "") for entry in declared]
    tapped = [
        item
        for entry, name in zip(declared, names, strict=True)
        for item in (Middleware(Tap, name=name, seen=seen), entry)
    ]
    install_middleware(app, tapped)
    answer = _get(app, "/ping")
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert seen == names


def test_the_built_stack_nests_the_layers_as_declared() -> None:
    """The app's own stack, walked from the outside in, holds the declared classes in
    order: ids first (so every answer has one), the submission fast lane innermost."""
    app = _app()
    install_middleware(app, _declared(app))
    layer = app.build_middleware_stack()
    nested = []
    while hasattr(layer, "app"):
        nested.append(type(layer))
        layer = layer.app
    declared = [
        RequestIdMiddleware,
        SecurityHeadersMiddleware,
        CORSMiddleware,
        QueryCredentialsMiddleware,
        BodySizeLimitMiddleware,
        SubmitFastLane,
    ]
    start = nested.index(RequestIdMiddleware)
    assert nested[start : start + len(declared)] == declared


def test_without_origins_there_is_no_cors_layer() -> None:
    """CORS is declared only for configured origins; the rest keeps its order."""
    app = _app()
    stack = gateway_middleware(
        limit_for=lambda _scope: 1024,
        cors_origins=[],
        submit_endpoints={},
        exception_handlers=app.exception_handlers,
    )
    assert [entry.cls for entry in stack] == [  # type: ignore[comparison-overlap]  # Starlette types cls as a factory
        RequestIdMiddleware,
        SecurityHeadersMiddleware,
        QueryCredentialsMiddleware,
        BodySizeLimitMiddleware,
        SubmitFastLane,
    ]
