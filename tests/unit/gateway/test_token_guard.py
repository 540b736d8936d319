"""The pieces that keep /v1/token answering under abuse, without servers: the hash gate's
lanes, failure key names, scope narrowing, query-string credentials and the access log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.http.accesslog import StripQueryFilter
from gateway.http.middleware import _names_a_credential
from gateway.routes.token import _granted_scopes
from gateway.token_guard import (
    HashBusyError,
    HashGate,
    failure_key_pair,
    failure_key_source,
    source_key_part,
)


async def test_suspect_lane_refuses_at_once_when_full() -> None:
    """With its one slot taken, a suspect attempt is refused without waiting."""
    gate = HashGate(slots=1, suspect_slots=1, wait_seconds=5)
    async with gate.slot(suspect=True, source="10.0.0.1"):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HashBusyError):
            async with gate.slot(suspect=True, source="10.0.0.2"):
                pass
        assert loop.time() - started < 0.1


async def test_a_full_suspect_lane_leaves_the_clean_lane_free() -> None:
    """Suspect attempts never take a clean slot: a clean source still gets in at once."""
    gate = HashGate(slots=1, suspect_slots=1, wait_seconds=0)
    async with (
        gate.slot(suspect=True, source="10.0.0.1"),
        gate.slot(suspect=False, source="10.0.0.9"),
    ):
        pass


async def test_clean_lane_queues_briefly_then_refuses() -> None:
    """A clean attempt waits for a slot up to the wait, then is refused as busy."""
    gate = HashGate(slots=1, suspect_slots=1, wait_seconds=0.05)
    async with gate.slot(suspect=False, source="10.0.0.1"):
        with pytest.raises(HashBusyError):
            async with gate.slot(suspect=False, source="10.0.0.2"):
                pass
    async with gate.slot(suspect=False, source="10.0.0.2"):  # released: free again
        pass


async def test_clean_lane_queue_is_bounded() -> None:
    """Past four waiters per slot, clean attempts are refused at once, not queued."""
    gate = HashGate(slots=1, suspect_slots=1, wait_seconds=5)
    release = asyncio.Event()

    async def hold(source: str) -> None:
        async with gate.slot(suspect=False, source=source):
            await release.wait()

    tasks = [asyncio.create_task(hold(f"10.0.1.{n}")) for n in range(5)]  # 1 running, 4 queued
    await asyncio.sleep(0.01)
    with pytest.raises(HashBusyError):
        async with gate.slot(suspect=False, source="10.0.2.1"):
            pass
    release.set()
    await asyncio.gather(*tasks)


async def test_one_source_holds_one_place_in_the_clean_lane() -> None:
    """A source already in the clean lane is treated as suspect for its other attempts."""
    gate = HashGate(slots=2, suspect_slots=1, wait_seconds=5)
    async with (
        gate.slot(suspect=False, source="10.0.0.1"),
        gate.slot(suspect=False, source="10.0.0.1"),  # the second goes to the suspect lane
    ):
        with pytest.raises(HashBusyError):  # suspect lane full: refused at once
            async with gate.slot(suspect=False, source="10.0.0.1"):
                pass
        async with gate.slot(suspect=False, source="10.0.0.2"):  # a clean slot is still free
            pass


def test_gate_refuses_a_configuration_without_slots() -> None:
    """Zero slots would refuse every grant: a configuration error, raised at once."""
    with pytest.raises(ValueError, match="slot"):
        HashGate(slots=0, suspect_slots=1, wait_seconds=1)


def test_failure_keys_hold_only_well_formed_parts() -> None:
    """Keys carry a canonical address and a well-formed id; anything else never gets in."""
    assert failure_key_source("::FFFF:127.0.0.1") == "tg:token:fail:ip:::ffff:7f00:1"
    assert failure_key_source("not an address") == "tg:token:fail:ip:unknown"
    assert source_key_part("127.0.0.5") == "127.0.0.5"
    assert failure_key_pair("demo-0a1b2c3d", "127.0.0.5") == (
        "tg:token:fail:client:demo-0a1b2c3d:127.0.0.5"
    )
    with pytest.raises(ValueError, match="well formed"):
        failure_key_pair("tgs_Sup3rSecretValueThatWasPastedHere", "127.0.0.5")


HELD = frozenset({"tasks:submit:*", "tasks:read"})


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        (None, HELD),
        ("", HELD),
        ("tasks:read", frozenset({"tasks:read"})),
        ("tasks:submit:test.touch", frozenset({"tasks:submit:test.touch"})),
        ("tasks:submit:* tasks:read", HELD),
        ("audit:read", None),
        ("tasks:read audit:read", None),
        ("   ", None),
        ("tasks:submit:BAD!", None),
    ],
)
def test_a_grant_carries_exactly_the_asked_subset(
    asked: str | None, granted: frozenset[str] | None
) -> None:
    """No scope asked: everything held; else the asked scopes if each is covered, else None."""
    assert _granted_scopes(asked, HELD) == granted


def test_a_specific_submit_scope_does_not_widen_to_the_wildcard() -> None:
    """Holding one task's submit scope never yields tasks:submit:*."""
    assert _granted_scopes("tasks:submit:*", frozenset({"tasks:submit:a"})) is None


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        (b"client_secret=x", True),
        (b"limit=5&access_token=x", True),
        (b"Client%5FSecret=x", True),
        (b"TOKEN=", True),
        (b"client_id", True),
        (b"limit=5&status=queued", False),
        (b"note=client_secret", False),
    ],
)
def test_query_credentials_are_recognised_by_name(query: bytes, refused: bool) -> None:
    """A credential parameter is found by its decoded, case-folded name, never by value."""
    assert _names_a_credential(query) is refused


def _access_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 400),
        None,
    )


def test_access_log_prints_the_path_without_its_query() -> None:
    """uvicorn's access line keeps method, path, version and status, never the query."""
    record = _access_record("/v1/tasks?access_token=sekrit")
    assert StripQueryFilter().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/tasks HTTP/1.1" 400'


def test_access_log_of_an_unknown_shape_still_loses_its_query() -> None:
    """A record of another shape is rewritten from its finished text: no query survives."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%(p)s done", ({"p": "/x?secret=1"},), None
    )
    assert StripQueryFilter().filter(record) is True
    assert record.getMessage() == "/x done"
