"""The Sentry hooks keep the shape of a failure and drop every value; the DSN needs TLS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from security.errors import ConfigError
from security.sentry_scrub import check_dsn, client_options, scrub_breadcrumb, scrub_event

CANARY = "canary-0f9e8d7c"


def _event() -> dict[str, Any]:
    frame = {"filename": "x.py", "function": "run", "lineno": 3, "vars": {"payload": CANARY}}
    return {
        "level": "error",
        "transaction": f"/v1/tasks/x?note={CANARY}",
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"cannot handle {CANARY}",
                    "mechanism": {"type": "celery", "data": {"arg": CANARY}},
                    "stacktrace": {"frames": [frame]},
                }
            ]
        },
        "threads": {"values": [{"stacktrace": {"frames": [dict(frame)]}}]},
        "logentry": {"message": "failed %s", "params": [CANARY], "formatted": f"failed {CANARY}"},
        "message": CANARY,
        "request": {
            "method": "POST",
            "url": f"https://gw/v1/tasks/x?token={CANARY}",
            "data": {"note": CANARY},
            "headers": {"Authorization": CANARY},
            "cookies": {"s": CANARY},
            "query_string": f"token={CANARY}",
            "env": {"REMOTE_ADDR": CANARY},
        },
        "extra": {"celery-job": {"args": [CANARY]}},
        "user": {"ip_address": CANARY},
        "contexts": {"runtime": {"name": "CPython"}, "celery": {"kwargs": CANARY}},
        "breadcrumbs": {
            "values": [
                {"category": "httplib", "message": CANARY, "data": {"url": CANARY}},
                {"category": "taskgate.worker", "message": "task started", "data": {"x": CANARY}},
            ]
        },
        "tags": {"celery_task_id": "id-1"},
    }


def test_scrubbed_event_holds_no_value_but_keeps_the_failure_shape() -> None:
    """Exception messages, frame variables, log arguments, request data, extra, user,
    unknown contexts and breadcrumb data are gone; types, frames, tags, the log format
    string and taskgate's own breadcrumb messages stay."""
    event = scrub_event(_event())
    assert CANARY not in json.dumps(event)
    [value] = event["exception"]["values"]
    assert value["type"] == "ValueError"
    assert value["value"] == ""
    assert value["stacktrace"]["frames"][0]["function"] == "run"
    assert event["logentry"] == {"message": "failed %s"}
    assert event["request"] == {"method": "POST", "url": "https://gw/v1/tasks/x"}
    assert event["transaction"] == "/v1/tasks/x"
    assert event["contexts"] == {"runtime": {"name": "CPython"}}
    assert event["tags"] == {"celery_task_id": "id-1"}
    crumbs = event["breadcrumbs"]["values"]
    assert crumbs[1]["message"] == "task started"
    assert "message" not in crumbs[0]


def test_breadcrumb_hook_drops_data_and_foreign_messages() -> None:
    """A breadcrumb keeps its category; data always goes, messages unless taskgate's."""
    crumb = scrub_breadcrumb({"category": "redis", "message": f"SET k {CANARY}", "data": {}})
    assert crumb == {"category": "redis"}


def test_client_options_collect_no_personal_data_variables_or_bodies() -> None:
    """The options passed to sentry_sdk.init turn off every collection that can hold a
    value and install both hooks."""
    options = client_options("https://k@sentry.example/1")
    collection = options["data_collection"]
    assert collection["user_info"] is False
    assert collection["stack_frame_variables"] is False
    assert collection["http_bodies"] == []
    assert collection["queues"] is False
    assert collection["cookies"] == {"mode": "off"}
    assert collection["http_headers"] == {"request": {"mode": "off"}}
    assert options["before_send"] is scrub_event
    assert options["before_breadcrumb"] is scrub_breadcrumb
    assert options["traces_sample_rate"] is None


@pytest.mark.parametrize(
    "dsn",
    [
        "https://key@o1.ingest.sentry.io/42",
        "http://key@127.0.0.1:9000/1",
        "http://key@[::1]:9000/1",
        "http://key@localhost:9000/1",
    ],
)
def test_dsn_over_tls_or_to_loopback_is_accepted(dsn: str) -> None:
    """https anywhere; plain http only to a loopback address (nothing leaves the host)."""
    assert check_dsn(dsn, setting="TASKGATE_SENTRY_DSN") == dsn


@pytest.mark.parametrize(
    "dsn",
    [
        "http://key@sentry.example/1",
        "http://key@10.0.0.5:9000/1",
        "ftp://key@127.0.0.1/1",
        "https://sentry.example/1",  # no key
        "https://key@sentry.example/",  # no project
        "not a url",
    ],
)
def test_dsn_without_tls_or_malformed_is_refused(dsn: str) -> None:
    """A DSN that would report in clear text over the network, or is no DSN, is refused."""
    with pytest.raises(ConfigError, match="TASKGATE_SENTRY_DSN"):
        check_dsn(dsn, setting="TASKGATE_SENTRY_DSN")
