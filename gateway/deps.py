"""Request-scoped dependencies, composed: Token -> Principal -> RequireScope, and Admin.

A client token (JWT) never works on admin routes and the admin token never stands in
for a client: they differ in shape and are checked by different dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.clients import scope_allows
from gateway.errors import ApiError
from gateway.state import GatewayState
from gateway.stored import (
    CLIENT_READ,
    REVOCATION_READ,
    REVOCATIONS_KEY,
    check_principal,
)
from security.errors import TokenError
from security.passwords import ADMIN_TOKEN_PREFIX, verify_admin_token
from security.tokens import AccessClaims
from workers.contract.keys import client_key, revoked_jti_key

__all__ = [
    "Admin",
    "AdminOrAuditor",
    "Claims",
    "Principal",
    "RequestId",
    "RequireScope",
    "State",
    "TasksReader",
    "bearer_token",
    "revoked_jti_key",
]


def state_of(request: Request) -> GatewayState:
    """The process's gateway state (plain function for handlers that are not dependencies)."""
    state: GatewayState = request.app.state.gateway
    return state


async def get_state(request: Request) -> GatewayState:
    # async: FastAPI runs plain-def dependencies in its threadpool, a hop per request.
    return state_of(request)


State = Annotated[GatewayState, Depends(get_state)]


async def get_request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


RequestId = Annotated[str, Depends(get_request_id)]


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer <token>``; anything else is refused."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise TokenError("missing or malformed Authorization header", reason="no_bearer")
    return token.strip()


@dataclass(frozen=True)
class Principal:
    """An authenticated API client."""

    client_id: str
    scopes: frozenset[str]
    jti: str
    exp: int

    @property
    def actor(self) -> str:
        return f"client:{self.client_id}"

    def allows(self, scope: str) -> bool:
        return scope_allows(self.scopes, scope)


async def verified_claims(request: Request, state: State) -> AccessClaims:
    """CPU-only: the client token's signature and claims (no Redis yet)."""
    token = bearer_token(request)
    if token.startswith(ADMIN_TOKEN_PREFIX):
        raise TokenError("the admin token is not a client token", reason="admin_token")
    return state.verified.verify(token, keys=state.keys.token, policy=state.token_policy)


Claims = Annotated[AccessClaims, Depends(verified_claims)]


async def current_client(claims: Claims, state: State, request_id: RequestId = "-") -> Principal:
    """A client whose token is valid, not revoked, issued under the client's current
    generation, and whose account is enabled - read from its MAC'd record and the MAC'd
    revocation list in one round trip (``gateway.stored``)."""
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.exists(revoked_jti_key(claims.jti))
        pipe.hmget(client_key(claims.sub), list(CLIENT_READ))
        pipe.hmget(REVOCATIONS_KEY, list(REVOCATION_READ))
        revoked, client_values, revocation_values = await pipe.execute()
    await check_principal(
        state, claims, client_values, revocation_values, revoked, request_id=request_id
    )
    return Principal(client_id=claims.sub, scopes=claims.scopes, jti=claims.jti, exp=claims.exp)


Client = Annotated[Principal, Depends(current_client)]


def admin_token_ok(request: Request, state: GatewayState) -> bool:
    """Whether the request carries the admin token (constant-time hash comparison)."""
    token = bearer_token(request)
    if not token.startswith(ADMIN_TOKEN_PREFIX) or state.admin_token_hash is None:
        return False
    return verify_admin_token(token, state.admin_token_hash)


async def require_admin(request: Request, state: State) -> str:
    """The admin token, and only it. Returns the audit actor name."""
    if not admin_token_ok(request, state):
        raise TokenError("admin token required", reason="not_admin")
    return "admin"


Admin = Annotated[str, Depends(require_admin)]


async def admin_or_auditor(request: Request, state: State) -> str:
    """The admin token, or a client token carrying ``audit:read``."""
    if admin_token_ok(request, state):
        return "admin"
    rid = str(getattr(request.state, "request_id", "-"))
    principal = await current_client(await verified_claims(request, state), state, rid)
    if not principal.allows("audit:read"):
        raise ApiError(403, "Forbidden", "the audit:read scope is required", kind="forbidden")
    return principal.actor


AdminOrAuditor = Annotated[str, Depends(admin_or_auditor)]


class RequireScope:
    """A dependency: the client principal, refused with 403 unless its token carries ``scope``.

    Every check of :func:`current_client` (signature, revocation, disabled client) runs first.
    """

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, who: Client) -> Principal:
        if not who.allows(self.scope):
            raise ApiError(
                403, "Forbidden", f"the {self.scope} scope is required", kind="forbidden"
            )
        return who


TasksReader = Annotated[Principal, Depends(RequireScope("tasks:read"))]
