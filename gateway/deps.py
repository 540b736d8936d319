"""Request-scoped dependencies, composed: Token -> Principal -> RequireScope, and Admin.

A client token (JWT) never works on admin routes and an operator credential never stands
in for a client: they differ in shape and are checked by different dependencies. Admin
routes take a named operator (``gateway.stores.operators``): ``Admin`` needs the admin role (an
auditor gets 403, audited), ``Reader`` takes either role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.http.errors import ApiError
from gateway.state import GatewayState
from gateway.stores.checks import (
    CLIENT_READ,
    REVOCATION_READ,
    REVOCATIONS_KEY,
    audit_refused,
    check_principal,
)
from gateway.stores.clients import scope_allows
from gateway.stores.operators import Operator
from security.audit.actions import AuditAction
from security.errors import StoredStateError, TokenError
from security.passwords import ADMIN_TOKEN_PREFIX
from security.tokens import AccessClaims
from workers.contract.keys import client_key, revoked_jti_key

__all__ = [
    "Admin",
    "AdminOrAuditor",
    "Claims",
    "Principal",
    "Reader",
    "RequestId",
    "RequireScope",
    "State",
    "TasksReader",
    "bearer_token",
    "client_claims",
    "current_operator",
    "forbid_auditor",
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


def client_claims(request: Request, state: GatewayState) -> AccessClaims:
    """CPU-only: the client token's signature and claims (no Redis yet)."""
    token = bearer_token(request)
    if token.startswith(ADMIN_TOKEN_PREFIX):
        raise TokenError("the admin token is not a client token", reason="admin_token")
    return state.verified.verify(token, keys=state.keys.token, policy=state.token_policy)


async def verified_claims(request: Request, state: State) -> AccessClaims:
    """The client token's claims, as a dependency (:func:`client_claims`)."""
    return client_claims(request, state)


Claims = Annotated[AccessClaims, Depends(verified_claims)]


async def current_client(claims: Claims, state: State, request_id: RequestId = "-") -> Principal:
    """A client whose token is valid, not revoked, issued under the client's current
    generation, and whose account is enabled - read from its MAC'd record and the MAC'd
    revocation list in one round trip (``gateway.stores.checks``)."""
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


async def current_operator(request: Request, state: GatewayState) -> Operator:
    """The named operator (or the bootstrap admin) whose credential the request carries."""
    token = bearer_token(request)
    if not token.startswith(ADMIN_TOKEN_PREFIX):
        raise TokenError("an operator credential is required", reason="not_admin")
    try:
        operator = await state.operators.authenticate(token)
    except StoredStateError as exc:  # a forged operator record: refused, audited, never used
        await audit_refused(
            state, exc, actor="anonymous", target="operator", request_id=_rid(request)
        )
        operator = None
    if operator is None:
        raise TokenError("an operator credential is required", reason="not_admin")
    return operator


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


async def forbid_auditor(request: Request, state: GatewayState, operator: Operator) -> None:
    """Refuse (403) and audit a state-changing call by an operator without the admin role."""
    if operator.is_admin:
        return
    await state.record(
        actor=operator.actor,
        action=AuditAction.OPERATOR_FORBIDDEN,
        outcome="denied",
        target=f"{request.method} {request.url.path}"[:128],
        reason=f"role {operator.role} is read-only",
        request_id=_rid(request),
    )
    raise ApiError(403, "Forbidden", "this needs the admin role", kind="forbidden")


async def require_admin(request: Request, state: State) -> str:
    """An operator with the admin role. Returns the audit actor (the operator's name)."""
    operator = await current_operator(request, state)
    await forbid_auditor(request, state, operator)
    return operator.actor


Admin = Annotated[str, Depends(require_admin)]


async def require_operator(request: Request, state: State) -> str:
    """Any operator (admin or auditor): read-only routes. Returns the audit actor."""
    return (await current_operator(request, state)).actor


Reader = Annotated[str, Depends(require_operator)]


async def admin_or_auditor(request: Request, state: State) -> str:
    """Any operator, or a client token carrying ``audit:read``."""
    if bearer_token(request).startswith(ADMIN_TOKEN_PREFIX):
        return (await current_operator(request, state)).actor
    rid = _rid(request)
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
