"""``POST /v1/token``: the OAuth2 client-credentials grant (RFC 6749 section 4.4).

Errors use the RFC 6749 codes (``invalid_client``, ``invalid_scope``, ``invalid_request``,
``unsupported_grant_type``) as the ``error`` member of an RFC 9457 problem+json body.
Brute force is held back by slowapi limits per client IP and per client id, stored in the
same TLS Redis (so they hold across processes), checked before the password hash runs.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated, Any

import limits
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from slowapi import Limiter

from gateway.clientip import client_ip
from gateway.deps import RequestId, State
from gateway.errors import ApiError
from gateway.settings import GatewaySettings
from gateway.stored import refuse_stored
from security.errors import StoredStateError
from security.tokens import issue_token
from workers.contract.keys import TOKEN_LIMIT_PREFIX

__all__ = ["build_token_limiter", "build_token_router"]

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


def build_token_limiter(settings: GatewaySettings) -> Limiter:
    """A slowapi limiter over the TLS Redis; moving window suits small auth limits."""
    trusted = tuple(settings.trusted_proxies)
    options: dict[str, Any] = dict(settings.redis.redis_kwargs())
    # limits' own key prefix (its default is "LIMITS"): the keys must match the ACL.
    options.update(socket_timeout=2, socket_connect_timeout=2, key_prefix=TOKEN_LIMIT_PREFIX)
    return Limiter(
        key_func=lambda request: client_ip(request, trusted),
        storage_uri=settings.redis_url,
        storage_options=options,
        strategy="moving-window",
        key_prefix=TOKEN_LIMIT_PREFIX,
        headers_enabled=False,
    )


def _oauth_error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> ApiError:
    return ApiError(
        status, "Token request refused", detail, kind=f"oauth-{code}", headers=headers, error=code
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise _oauth_error(400, "invalid_request", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _oauth_error(400, "invalid_request", "malformed Basic credentials")
    return client_id, secret


def build_token_router(limiter: Limiter, settings: GatewaySettings) -> APIRouter:
    router = APIRouter(tags=["auth"])
    ip_item = limits.parse(settings.token_rate_limit_ip)
    client_item = limits.parse(settings.token_rate_limit_client)

    async def hit(request: Request, item: limits.RateLimitItem, *ident: str) -> dict[str, str]:
        """One slowapi/limits hit; raises 429 with Retry-After when over the limit."""
        strategy = limiter.limiter

        def check() -> tuple[bool, Any]:
            allowed = strategy.hit(item, *ident)
            return allowed, strategy.get_window_stats(item, *ident)

        # slowapi's storage is synchronous: keep it off the event loop.
        allowed, stats = await asyncio.to_thread(check)
        reset = max(1, int(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            state = request.app.state.gateway
            await state.record(
                actor=f"ip:{ident[-1]}" if ident[0] == "ip" else f"client:{ident[-1]}",
                action="rate_limit.hit",
                outcome="denied",
                target="/v1/token",
                reason=f"{ident[0]} limit",
                request_id=str(getattr(request.state, "request_id", "")),
            )
            raise ApiError(
                429,
                "Too many requests",
                "too many token requests; slow down",
                kind="rate-limited",
                headers={**headers, "Retry-After": str(reset)},
                error="slow_down",
            )
        return headers

    @router.post(
        "/v1/token",
        summary="OAuth2 client-credentials grant: a short-lived access token",
        responses={
            400: {
                "description": "invalid_request (missing or malformed fields) / invalid_scope /"
                " unsupported_grant_type",
                **_PROBLEM,
            },
            401: {"description": "invalid_client", **_PROBLEM},
            429: {"description": "Too many attempts", **_PROBLEM},
            503: {"description": "Storage unreachable (fail closed)", **_PROBLEM},
        },
        # Credentials travel in the form or in Basic auth, never as a bearer token.
        openapi_extra={"security": []},
    )
    async def token(
        request: Request,
        *,
        state: State,
        request_id: RequestId,
        grant_type: Annotated[str, Form(min_length=1)],
        client_id: Annotated[str | None, Form(max_length=64)] = None,
        client_secret: Annotated[str | None, Form(max_length=256)] = None,
        scope: Annotated[str | None, Form(max_length=4096)] = None,
    ) -> JSONResponse:
        ip = client_ip(request, tuple(settings.trusted_proxies))
        headers = await hit(request, ip_item, "ip", ip)
        if grant_type != "client_credentials":
            raise _oauth_error(
                400, "unsupported_grant_type", "only client_credentials is supported"
            )
        basic = _basic_credentials(request)
        if basic is not None:
            if client_id is not None or client_secret is not None:
                raise _oauth_error(400, "invalid_request", "send credentials once (Basic or form)")
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise _oauth_error(400, "invalid_request", "client_id and client_secret are required")
        headers = await hit(request, client_item, "client", client_id[:64]) | headers
        try:
            client = await state.clients.authenticate(client_id, client_secret)
        except StoredStateError as exc:
            # The record was changed without the state key: never trusted, never repaired.
            await refuse_stored(
                state,
                exc,
                actor=f"client:{client_id[:64]}",
                target=f"client:{client_id[:64]}",
                request_id=request_id,
            )
            client = None
        if client is None:
            await state.record(
                actor=f"client:{client_id[:64]}",
                action="token.issue",
                outcome="denied",
                reason="invalid_client",
                request_id=request_id,
            )
            state.metrics.tokens.labels("invalid_client").inc()
            raise _oauth_error(
                401,
                "invalid_client",
                "client authentication failed",
                headers={"WWW-Authenticate": 'Basic realm="taskgate"'},
            )
        requested = set(scope.split()) if scope else set(client.scopes)
        if not requested or not requested <= set(client.scopes):
            await state.record(
                actor=f"client:{client.client_id}",
                action="token.issue",
                outcome="denied",
                reason="invalid_scope",
                request_id=request_id,
            )
            state.metrics.tokens.labels("invalid_scope").inc()
            raise _oauth_error(
                400, "invalid_scope", "a requested scope is not granted to this client"
            )
        access, claims = issue_token(
            subject=client.client_id,
            scopes=requested,
            keys=state.keys.token,
            policy=state.token_policy,
            generation=client.generation,
        )
        await state.record(
            actor=f"client:{client.client_id}",
            action="token.issue",
            outcome="allowed",
            target=claims.jti,
            reason=" ".join(sorted(requested)),
            request_id=request_id,
        )
        state.metrics.tokens.labels("issued").inc()
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": " ".join(sorted(requested)),
        }
        return JSONResponse(body, headers={**headers, "Pragma": "no-cache"})

    return router
