"""A gateway state built by the app's own lifespan, over the session's TLS Redis.

``gateway_state`` enters :func:`gateway.app.create_app`'s lifespan (the gateway's Redis
user, its audit batcher, script batcher and lease keeper) with a small catalogue of its own,
so the submission stages can be called one by one, without HTTP. ``submission`` makes the
context the submit route makes: a registered client and a genuinely issued token.
"""

from __future__ import annotations

import gc
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio

from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from gateway.stores.clients import ClientRegistry
from gateway.submission.stages import Submission
from security.keystore import KeyRing
from security.tokens import issue_token
from taskgate.devstack.procs import free_port
from tests.support.submissions import MakeSubmission
from tests.unit.gateway.stage_tasks import CATALOGUE


def _acl_denials(client: redis.Redis) -> list[tuple[Any, ...]]:
    return [
        (e.get("username"), e.get("reason"), e.get("object"), e.get("count"))
        for e in client.acl_log(count=256)
    ]


async def _started(env: dict[str, str], keys: KeyRing, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in env.items():
        if key.startswith("TASKGATE_"):
            monkeypatch.setenv(key, value)
    return create_app(GatewaySettings(), keys=keys, catalogue=CATALOGUE)


@pytest.fixture
async def gateway_state(
    stack_env: dict[str, str],
    keyring: KeyRing,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[GatewayState]:
    """The state the gateway's lifespan builds; the test fails if Redis logged an ACL
    denial meanwhile (every stage's writes must be within the gateway user's rights)."""
    before = _acl_denials(redis_client)
    threshold = gc.get_threshold()
    app = await _started(stack_env, keyring, monkeypatch)
    try:
        async with app.router.lifespan_context(app):
            yield app.state.gateway
    finally:
        gc.unfreeze()  # the lifespan tunes the collector for a server process
        gc.set_threshold(*threshold)
    assert _acl_denials(redis_client) == before


@pytest.fixture
async def unreachable_state(
    stack_env: dict[str, str], keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayState]:
    """A gateway state whose Redis URL names a port nothing listens on."""
    env = {**stack_env, "TASKGATE_REDIS_URL": f"rediss://127.0.0.1:{free_port()}/0"}
    threshold = gc.get_threshold()
    app = await _started(env, keyring, monkeypatch)
    try:
        async with app.router.lifespan_context(app):
            yield app.state.gateway
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.fixture
def make_submission(
    gateway_state: GatewayState, async_redis: redis.asyncio.Redis, keyring: KeyRing
) -> MakeSubmission:
    """Register a client and build the context the submit route builds for its request."""

    async def make(
        task: str = "stage.touch",
        body: bytes = b'{"note": "hello"}',
        *,
        scopes: str = "tasks:submit:* tasks:read",
        token_scopes: str | None = None,
        idempotency_key: str | None = None,
        rate_limit: str = "120/minute",
        max_queued: int = 100,
        client_id: str | None = None,
    ) -> Submission:
        if client_id is None:
            client, _ = await ClientRegistry(async_redis, keyring.state).create(
                f"stage-{uuid.uuid4().hex[:6]}",
                scopes,
                rate_limit=rate_limit,
                max_queued=max_queued,
            )
            client_id = client.client_id
        _, claims = issue_token(
            subject=client_id,
            scopes=(token_scopes or scopes).split(),
            keys=gateway_state.keys.token,
            policy=gateway_state.token_policy,
        )
        spec = gateway_state.catalogue.get(task)
        if spec is None:
            raise LookupError(task)
        return Submission(
            client_id=client_id,
            jti=claims.jti,
            scopes=claims.scopes,
            spec=spec,
            raw_body=body,
            idempotency_key=idempotency_key,
            request_id=f"rid-{secrets.token_hex(4)}",
            claims=claims,
        )

    return make
