"""What one gateway process holds: settings, keys, Redis, the catalogue, the audit batcher."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis.asyncio

from gateway.anchoring import VerifyLimiter
from gateway.health import Readiness
from gateway.metrics import Metrics
from gateway.refusals import RefusalAggregator, is_aggregated
from gateway.settings import GatewaySettings
from gateway.stores.clients import ClientRegistry
from gateway.stores.operators import OperatorRegistry
from gateway.submission.audit_batcher import AuditBatcher
from gateway.submission.codec import SealedCodec
from gateway.submission.idempotency import LeaseKeeper
from gateway.submission.script_batcher import ScriptBatcher
from gateway.token_cache import VerifiedTokens
from security.audit import AuditRecord
from security.audit.actions import AuditAction
from security.keystore import KeyRing
from security.tokens import TokenPolicy
from workers.contract.catalogue import Catalogue

__all__ = ["ClientLimits", "GatewayState"]


@dataclass(frozen=True)
class ClientLimits:
    """A client's own limits, cached briefly (the disabled flag is never cached)."""

    rate_limit: str
    max_queued: int
    fetched_at: float


@dataclass
class GatewayState:
    """Collaborators of the request handlers, built once per process in the lifespan."""

    settings: GatewaySettings
    keys: KeyRing
    redis: redis.asyncio.Redis
    codec: SealedCodec
    catalogue: Catalogue
    token_policy: TokenPolicy
    audit: AuditBatcher
    scripts: ScriptBatcher
    leases: LeaseKeeper
    readiness: Readiness
    clients: ClientRegistry
    admin_token_hash: str | None
    operators: OperatorRegistry
    metrics: Metrics = field(default_factory=Metrics)
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)
    refusals: RefusalAggregator | None = None
    verify_limiter: VerifyLimiter | None = None
    _limits: dict[str, ClientLimits] = field(default_factory=dict, repr=False)
    _seen: dict[str, int] = field(default_factory=dict, repr=False)

    def high_water(self, name: str, version: int) -> bool:
        """False if this process has read a later version of the record ``name`` (an
        older authentic record was put back); otherwise remember ``version``."""
        seen = self._seen.get(name, 0)
        if version < seen:
            return False
        if version > seen:
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen[name] = version
        return True

    async def record(
        self,
        *,
        actor: str,
        action: AuditAction,
        outcome: str,
        target: str = "",
        reason: str = "",
        request_id: str = "",
    ) -> None:
        """Append one audit record (awaits the group commit).

        A refusal of unauthenticated or rate-limited traffic is counted per window and
        source instead (``gateway.refusals``): a flood costs a bounded number of records.
        """
        record = AuditRecord.make(
            actor=actor,
            action=action,
            outcome=outcome,  # type: ignore[arg-type]
            target=target,
            reason=reason,
            request_id=request_id,
        )
        if self.refusals is not None and is_aggregated(action, outcome, reason):
            await self.refusals.refuse(record)
        else:
            await self.audit.record(record)

    async def client_limits(self, client_id: str) -> ClientLimits | None:
        """The client's rate limit and queue cap, from a cache at most a few seconds old."""
        cached = self._limits.get(client_id)
        now = time.monotonic()
        if cached is not None and now - cached.fetched_at < self.settings.client_cache_seconds:
            return cached
        client = await self.clients.get(client_id)
        if client is None:
            self._limits.pop(client_id, None)
            return None
        fresh = ClientLimits(client.rate_limit, client.max_queued, now)
        if len(self._limits) > 10_000:
            self._limits.clear()
        self._limits[client_id] = fresh
        return fresh
