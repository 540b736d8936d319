"""``GET /metrics``: the admin token, or a scraper whose address is in ``TASKGATE_METRICS_ALLOW``.

One scrape of any gateway process answers for the whole deployment
(``gateway.metrics_scrape``): scrape one gateway (or each, behind a load balancer: the
answers are the same), never sum them. ``docs/metrics.md`` lists the metrics.

Loopback is not trusted by itself: behind a reverse proxy on the same host every request
comes from loopback, which would make the metrics public. The socket peer is what counts,
never ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress

import redis
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.deps import State, current_operator
from gateway.http.clientip import parse_networks
from gateway.http.errors import ApiError
from gateway.http.problems import PROBLEM_JSON
from gateway.metrics_scrape import render
from security.errors import TokenError

__all__ = ["build_metrics_router"]


def _allowed_peer(request: Request, allow: tuple[str, ...]) -> bool:
    if not allow:
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in parse_networks(allow))


def build_metrics_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (admin token, or an allow-listed scraper)",
        response_class=Response,
        responses={
            200: {
                "description": "The Prometheus text exposition format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            },
            401: {"description": "Not allowed", "content": {PROBLEM_JSON: {}}},
            503: {"description": "The metrics store is unreachable", "content": {PROBLEM_JSON: {}}},
        },
        # Optional auth: the admin token, or none at all from an allow-listed address.
        openapi_extra={"security": [{"bearer": []}, {}]},
    )
    async def metrics(request: Request, state: State) -> Response:
        if not _allowed_peer(request, tuple(state.settings.metrics_allow)):
            try:
                allowed = (await current_operator(request, state)).is_admin
            except TokenError:
                allowed = False
            if not allowed:
                raise TokenError("metrics need the admin token", reason="not_admin")
        try:
            body = await render(state)
        except (redis.RedisError, OSError):
            raise ApiError(
                503,
                "Service unavailable",
                "the metrics store cannot be reached",
                kind="unavailable",
                headers={"Retry-After": "5"},
            ) from None
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
