"""The lease keeper renews only what is due, keeps what it could not renew, and says so in
the log without naming a key."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio

from gateway.submission.idempotency import LeaseKeeper, pending_record
from gateway.submission.script_batcher import ScriptBatcher
from taskgate.devstack.procs import free_port


async def test_a_failed_renewal_is_logged_without_keys_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing is sent before a third of the lease; Redis unreachable: one warning with the
    count only, and the reservation stays held for the next tick."""
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1)
    scripts = ScriptBatcher(unreachable)
    now = [0.0]
    keeper = LeaseKeeper(scripts, lease=3.0, clock=lambda: now[0])
    key = "tg:idem:client-canary:" + "ab" * 32
    pending = pending_record("cd" * 32, "test.touch", "task-canary")
    try:
        keeper.hold(key, pending)
        now[0] = 0.9
        assert await keeper.renew_due() == 0  # not due: no call, no failure
        assert caplog.records == []
        now[0] = 1.1
        with caplog.at_level(logging.WARNING, logger="taskgate.gateway"):
            assert await keeper.renew_due() == 0
        assert keeper.held() == 1
        assert [r.getMessage() for r in caplog.records] == [
            "could not renew 1 idempotency reservation(s)"
        ]
        assert "canary" not in caplog.text
        assert "ab" * 32 not in caplog.text
        keeper.drop(key)
        assert keeper.held() == 0
    finally:
        await keeper.stop()
        await scripts.stop()
        await unreachable.aclose()
