"""The submission fast lane answers exactly as FastAPI would, and only its own requests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gateway.http.errors import ApiError, install_error_handlers
from gateway.http.fastlane import SubmitFastLane
from gateway.http.middleware import RequestIdMiddleware, SecurityHeadersMiddleware
from security.errors import InputRejectedError, TokenError


async def submit(request: Request) -> Response:
    """A stand-in submit handler: its outcome is picked by the X-Mode header."""
    mode = request.headers.get("x-mode", "ok")
    body = await request.body()
    if mode == "limited":
        raise ApiError(
            429, "Too many requests", "slow down", kind="rate-limited", headers={"Retry-After": "3"}
        )
    if mode == "token":
        raise TokenError("expired", reason="expired")
    if mode == "rejected":
        raise InputRejectedError("bad", field="payload.to", reason="bad_address")
    if mode == "crash":
        raise RuntimeError("unexpected")
    return JSONResponse(
        {"id": "t-1", "size": len(body)}, status_code=202, headers={"Location": "/v1/tasks/t-1"}
    )


async def never(request: Request) -> Response:  # FastAPI's copy of /lane: must not run
    raise AssertionError("the fast lane's path reached FastAPI's router")


def build() -> FastAPI:
    """``/v1/tasks/lane`` behind the fast lane; ``/v1/tasks/fapi`` through FastAPI."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_api_route("/v1/tasks/lane", never, methods=["POST"])
    app.add_api_route("/v1/tasks/fapi", submit, methods=["POST"])
    app.add_middleware(
        SubmitFastLane,
        endpoints={"/v1/tasks/lane": submit},
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def post(app: FastAPI, path: str, mode: str, method: str = "POST") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            return await client.request(
                method,
                path,
                content=b'{"a": 1}',
                headers={"x-mode": mode, "x-request-id": "rid-1"},
            )

    return asyncio.run(go())


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = dict(response.headers)
    body = response.json()
    if isinstance(body, dict) and "instance" in body:
        body["instance"] = body["instance"].replace("/fapi", "/lane")
    return response.status_code, headers, body


def test_the_fast_lane_answers_each_outcome_exactly_as_fastapi_does() -> None:
    """Accepted, refused (API error, token, rejected input) and crashed submissions get
    the same status, headers and problem body from the fast lane as through FastAPI."""
    app = build()
    for mode in ("ok", "limited", "token", "rejected", "crash"):
        lane = post(app, "/v1/tasks/lane", mode)
        fapi = post(app, "/v1/tasks/fapi", mode)
        assert comparable(lane) == comparable(fapi), mode
    assert post(app, "/v1/tasks/lane", "ok").status_code == 202
    refused = post(app, "/v1/tasks/lane", "limited")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["request_id"] == "rid-1"
    assert post(app, "/v1/tasks/lane", "crash").json()["status"] == 500


def test_other_methods_and_paths_go_to_fastapi() -> None:
    """Only POST on a listed path takes the lane: a GET there is FastAPI's 405 (with
    Allow), an unlisted path FastAPI's 404."""
    app = build()
    wrong_method = post(app, "/v1/tasks/lane", "ok", method="GET")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert post(app, "/v1/tasks/elsewhere", "ok").status_code == 404


def test_a_mounted_root_path_is_left_to_fastapi() -> None:
    """Under a root path the request's path is not the route's: FastAPI decides."""
    seen: list[str] = []

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await JSONResponse({}, status_code=204)(scope, receive, send)

    lane = SubmitFastLane(downstream, endpoints={"/v1/tasks/lane": submit}, exception_handlers={})

    async def go() -> int:
        transport = httpx.ASGITransport(app=lane, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            return (await client.post("/v1/tasks/lane", content=b"{}")).status_code

    assert asyncio.run(go()) == 204
    assert seen == ["/v1/tasks/lane"]


def test_plain_function_and_status_code_handlers_are_used_as_starlette_would() -> None:
    """A handler may be a plain function, and an HTTP error's status-code handler comes
    before its class's: the lane picks and calls them as Starlette's exception layer does."""
    from starlette.exceptions import HTTPException

    async def teapot(request: Request) -> Response:
        raise HTTPException(418, "short and stout")

    def by_status(request: Request, exc: Exception) -> Response:
        return JSONResponse({"by": "status"}, status_code=418)

    def by_class(request: Request, exc: Exception) -> Response:
        return JSONResponse({"by": "class"}, status_code=400)

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the lane's path reached the app behind it")

    lane = SubmitFastLane(
        downstream,
        endpoints={"/v1/tasks/lane": teapot},
        exception_handlers={HTTPException: by_class, 418: by_status},
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=lane)
        async with httpx.AsyncClient(transport=transport, base_url="https://gw") as client:
            return await client.post("/v1/tasks/lane", content=b"{}")

    answered = asyncio.run(go())
    assert answered.status_code == 418
    assert answered.json() == {"by": "status"}
