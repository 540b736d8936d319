"""The submission routes, answered without FastAPI's per-request machinery.

``POST /v1/tasks/{name}`` is the gateway's hot path. Its handler takes only the
``Request`` (``routes_submit.submit_route``), yet FastAPI still walks its route table,
builds its request scope and dependency state and wraps the call in its exception and
exit-stack layers: measured on the 2-core development machine, about 50 microseconds a
request, a tenth of a whole submission's server CPU.

:class:`SubmitFastLane` sits innermost among our middleware (inside the request id,
security headers, CORS and body cap layers) and answers exactly those requests with the
same handler and the same exception handlers FastAPI would use (``gateway.http.errors``), so
responses are byte for byte the ones FastAPI gives. Everything else - any other path or
method, a mounted root path - goes to FastAPI untouched; the routes stay declared there
too, so the OpenAPI document, ``405`` with ``Allow`` and the docs are unchanged. An
exception without a handler propagates exactly as from FastAPI's router (to Starlette's
server-error layer: a 500 problem).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Endpoint", "SubmitFastLane"]

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


class SubmitFastLane:
    """Serve ``POST`` on each path of ``endpoints`` directly; pass everything else on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        endpoints: Mapping[str, Endpoint],
        exception_handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self.endpoints = dict(endpoints)
        # As Starlette's ExceptionMiddleware: the catch-all (500 / Exception) handler is
        # the server-error layer's, outside every middleware.
        self.handlers = {
            key: handler
            for key, handler in exception_handlers.items()
            if key not in (500, Exception)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.endpoints.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        """Starlette's order: an HTTP error's status code first, then the exception's MRO."""
        if isinstance(exc, HTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None
