"""The context that flows through the submission's stages, and the shape of a stage.

A stage is ``await stage(ctx, state) -> ctx``; :mod:`gateway.submission.stages` lists them and runs
them in order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.state import GatewayState
from gateway.submission.ratelimit import LimitState
from security.tokens import AccessClaims
from security.vault import SwapResult
from workers.contract.catalogue import TaskSpec

__all__ = ["Stage", "Submission"]


@dataclass
class Submission:
    """The context that flows through the stages."""

    client_id: str
    jti: str
    scopes: frozenset[str]
    spec: TaskSpec
    raw_body: bytes = field(repr=False)  # holds the secret values until swap
    idempotency_key: str | None
    request_id: str
    now: float = field(default_factory=time.time)
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    limits: list[LimitState] = field(default_factory=list)
    body_hash: str = ""
    idem_redis_key: str | None = None
    idem_pending: str | None = None  # the reservation this request holds (its lease token)
    reserved: bool = False  # the check took a queue slot for task_id (released on refusal)
    payload: dict[str, Any] = field(default_factory=dict, repr=False)
    swapped: SwapResult | None = field(default=None, repr=False)
    sealed: bytes = field(default=b"", repr=False)
    claims: AccessClaims | None = field(default=None, repr=False)


Stage = Callable[[Submission, GatewayState], Awaitable[Submission]]
