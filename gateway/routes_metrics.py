"""``GET /metrics``: the admin token, or a caller on loopback (a local scraper or sidecar)."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import State, admin_token_ok
from security.errors import TokenError

__all__ = ["build_metrics_router"]


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_metrics_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics (admin token, or a loopback caller)",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}},
            401: {"description": "Not allowed"},
        },
        # Optional auth: the admin token, or none at all from loopback.
        openapi_extra={"security": [{"bearer": []}, {}]},
    )
    async def metrics(request: Request, state: State) -> Response:
        if not _loopback(request):
            try:
                allowed = admin_token_ok(request, state)
            except TokenError:
                allowed = False
            if not allowed:
                raise TokenError("metrics need the admin token off loopback", reason="not_admin")
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
