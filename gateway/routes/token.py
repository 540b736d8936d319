"""``POST /v1/token``: the OAuth2 client-credentials grant (RFC 6749 section 4.4).

Errors use the RFC 6749 codes (``invalid_client``, ``invalid_scope``, ``invalid_request``,
``unsupported_grant_type``) as the ``error`` member of an RFC 9457 problem+json body.

Before the password hash runs: a slowapi limit per source address (in the TLS Redis, so it
holds across processes); a ``client_id`` that is not a well-formed id is refused as
``invalid_client`` and never audited, logged or put in a key; failure counts per source and
per (client id, source) (``gateway.token_guard``). The hash itself waits for a slot of the
per-process :class:`~gateway.token_guard.HashGate`. A client may ask for any subset of its
scopes, ``tasks:submit:<task>`` under ``tasks:submit:*`` included. See docs/tokens.md.
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

from gateway.deps import RequestId, State
from gateway.http.clientip import client_ip
from gateway.http.errors import ApiError
from gateway.schemas import TokenResponse
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from gateway.stores.checks import refuse_stored
from gateway.stores.clients import Client, is_valid_client_id, scope_allows
from gateway.token_guard import (
    FailureCounter,
    FailureState,
    HashBusyError,
    HashGate,
    source_key_part,
)
from security.audit.actions import AuditAction
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


def _granted_scopes(scope: str | None, held: frozenset[str]) -> frozenset[str] | None:
    """All of ``held`` when no scope is asked, else the asked subset; None if one is not held.

    ``tasks:submit:<task>`` is covered by ``tasks:submit:*``, so a client holding the
    wildcard can get a token for one task only.
    """
    if not scope:
        return held or None
    asked = frozenset(scope.split())
    if not asked or not all(scope_allows(held, item) for item in asked):
        return None
    return asked


def _limit_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(max(1, reset)),
    }


def _slow_down(headers: dict[str, str]) -> ApiError:
    return ApiError(
        429,
        "Too many requests",
        "too many token requests; slow down",
        kind="rate-limited",
        headers={**headers, "Retry-After": headers["RateLimit-Reset"]},
        error="slow_down",
    )


class _Guards:
    """The checks that run before and around the secret check (see the module docstring)."""

    def __init__(self, limiter: Limiter, settings: GatewaySettings) -> None:
        self.limiter = limiter
        self.ip_item = limits.parse(settings.token_rate_limit_ip)
        self.failures = FailureCounter(
            per_source=settings.token_failure_limit_ip,
            per_pair=settings.token_failure_limit_client,
        )
        self.gate = HashGate(
            slots=settings.token_hash_slots,
            suspect_slots=settings.token_hash_suspect_slots,
            wait_seconds=settings.token_hash_wait,
        )

    @staticmethod
    async def denied(state: GatewayState, actor: str, reason: str, request_id: str) -> None:
        await state.record(
            actor=actor,
            action=AuditAction.RATE_LIMIT_HIT,
            outcome="denied",
            target="/v1/token",
            reason=reason,
            request_id=request_id,
        )

    async def hit_ip(self, state: GatewayState, ip: str, request_id: str) -> dict[str, str]:
        """One request against the per-source limit; 429 with Retry-After when over it."""
        strategy, item = self.limiter.limiter, self.ip_item

        def check() -> tuple[bool, Any]:
            allowed = strategy.hit(item, "ip", ip)
            return allowed, strategy.get_window_stats(item, "ip", ip)

        # slowapi's storage is synchronous: keep it off the event loop.
        allowed, stats = await asyncio.to_thread(check)
        headers = _limit_headers(item.amount, stats.remaining, int(stats.reset_time - time.time()))
        if not allowed:
            await self.denied(state, f"ip:{ip}", "ip limit", request_id)
            state.metrics.token("rate_limited")
            state.metrics.limit("token_ip")
            raise _slow_down(headers)
        return headers

    @staticmethod
    async def refuse_client(
        state: GatewayState, actor: str, reason: str, request_id: str
    ) -> ApiError:
        """Audit a failed client authentication; the 401 to raise."""
        await state.record(
            actor=actor,
            action=AuditAction.TOKEN_ISSUE,
            outcome="denied",
            reason=reason,
            request_id=request_id,
        )
        state.metrics.token(reason)
        return _oauth_error(
            401,
            "invalid_client",
            "client authentication failed",
            headers={"WWW-Authenticate": 'Basic realm="taskgate"'},
        )

    async def check_failures(
        self, state: GatewayState, client_id: str, ip: str, request_id: str
    ) -> FailureState:
        """429 if this source, or this id from this source, failed too often."""
        failures = self.failures
        seen = await failures.read(state.redis, client_id, ip)
        if seen.source >= failures.source_limit:
            await self.denied(state, f"ip:{ip}", "source failure limit", request_id)
            state.metrics.token("locked")
            raise _slow_down(_limit_headers(failures.source_limit, 0, seen.source_ttl))
        if seen.pair >= failures.pair_limit:
            await self.denied(state, f"client:{client_id}", "client failure limit", request_id)
            state.metrics.token("locked")
            raise _slow_down(_limit_headers(failures.pair_limit, 0, seen.pair_ttl))
        return seen

    async def authenticate(
        self,
        state: GatewayState,
        client_id: str,
        secret: str,
        *,
        ip: str,
        suspect: bool,
        request_id: str,
    ) -> Client | None:
        """The secret check in a slot of the gate's lane; 503 + Retry-After when it is full."""
        try:
            async with self.gate.slot(suspect=suspect, source=ip):
                return await state.clients.authenticate(client_id, secret)
        except StoredStateError as exc:
            # The record was changed without the state key: never trusted, never repaired.
            await refuse_stored(
                state,
                exc,
                actor=f"client:{client_id}",
                target=f"client:{client_id}",
                request_id=request_id,
            )
            return None
        except HashBusyError:
            await self.denied(state, f"ip:{ip}", "secret checks busy", request_id)
            state.metrics.token("busy")
            raise ApiError(
                503,
                "Service busy",
                "too many token requests at once; retry shortly",
                kind="busy",
                headers={"Retry-After": "1"},
                error="temporarily_unavailable",
            ) from None


def build_token_router(limiter: Limiter, settings: GatewaySettings) -> APIRouter:
    router = APIRouter(tags=["auth"])
    trusted = tuple(settings.trusted_proxies)
    guards = _Guards(limiter, settings)

    @router.post(
        "/v1/token",
        summary="OAuth2 client-credentials grant: a short-lived access token",
        response_model=None,
        responses={
            200: {"model": TokenResponse, "description": "The access token"},
            400: {
                "description": "invalid_request (missing or malformed fields) / invalid_scope /"
                " unsupported_grant_type",
                **_PROBLEM,
            },
            401: {"description": "invalid_client", **_PROBLEM},
            429: {"description": "Too many attempts", **_PROBLEM},
            503: {
                "description": "Too many secret checks at once (Retry-After), or storage"
                " unreachable (fail closed)",
                **_PROBLEM,
            },
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
        ip = source_key_part(client_ip(request, trusted))
        headers = await guards.hit_ip(state, ip, request_id)
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
        if not is_valid_client_id(client_id):
            # Could be a secret pasted in the wrong field: its value goes nowhere.
            await guards.failures.failed(state.redis, ip)
            raise await guards.refuse_client(state, f"ip:{ip}", "malformed_client_id", request_id)
        seen = await guards.check_failures(state, client_id, ip, request_id)
        client = await guards.authenticate(
            state, client_id, client_secret, ip=ip, suspect=seen.source > 0, request_id=request_id
        )
        if client is None:
            await guards.failures.failed(state.redis, ip, client_id)
            raise await guards.refuse_client(
                state, f"client:{client_id}", "invalid_client", request_id
            )
        if seen.pair:
            await guards.failures.succeeded(state.redis, client_id, ip)
        granted = _granted_scopes(scope, client.scopes)
        if granted is None:
            await state.record(
                actor=f"client:{client.client_id}",
                action=AuditAction.TOKEN_ISSUE,
                outcome="denied",
                reason="invalid_scope",
                request_id=request_id,
            )
            state.metrics.token("invalid_scope")
            raise _oauth_error(
                400, "invalid_scope", "a requested scope is not granted to this client"
            )
        access, claims = issue_token(
            subject=client.client_id,
            scopes=granted,
            keys=state.keys.token,
            policy=state.token_policy,
            generation=client.generation,
        )
        await state.record(
            actor=f"client:{client.client_id}",
            action=AuditAction.TOKEN_ISSUE,
            outcome="allowed",
            target=claims.jti,
            reason=" ".join(sorted(granted)),
            request_id=request_id,
        )
        state.metrics.token("issued")
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": " ".join(sorted(granted)),
        }
        return JSONResponse(body, headers={**headers, "Pragma": "no-cache"})

    return router
