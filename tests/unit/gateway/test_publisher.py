"""The broker message the gateway writes: the cached template must equal a full encode."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from gateway.submission.publisher import OutgoingTask, _b64, _encode, encode_message
from workers.contract.wire import GATEWAY_COPY


def _task(task_id: str, **overrides: object) -> OutgoingTask:
    fields: dict[str, object] = {
        "task_id": task_id,
        "name": "email.send",
        "body": bytes(range(256)) * 3,
        "content_type": "application/x-taskgate-sealed",
        "queue": "taskgate",
        "soft_time_limit": 30.0,
        "time_limit": 60,
    }
    return OutgoingTask(**(fields | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"soft_time_limit": None, "time_limit": None},
        {"expires": "2026-11-25T00:00:00"},
        {"copied": True},
    ],
)
def test_templated_message_equals_a_full_encode(overrides: dict[str, object]) -> None:
    """Splicing id, body and tag into the cached template gives the same document."""
    task = _task(str(uuid.uuid4()), **overrides)
    fast = json.loads(encode_message(task))
    tag = fast["properties"]["delivery_tag"]
    assert fast == json.loads(_encode(task, task.task_id, _b64(task.body), tag))
    assert base64.b64decode(fast["body"]) == task.body
    assert uuid.UUID(tag).version == 4


def test_every_message_gets_its_own_delivery_tag() -> None:
    """kombu keys in-flight messages by delivery tag: two messages never share one."""
    task = _task(str(uuid.uuid4()))
    tags = {json.loads(encode_message(task))["properties"]["delivery_tag"] for _ in range(50)}
    assert len(tags) == 50


def test_an_id_that_is_not_a_uuid_is_encoded_in_full() -> None:
    """Only a canonical UUID is spliced in unescaped; anything else goes through json."""
    task = _task('odd"id')
    doc = json.loads(encode_message(task))
    assert doc["headers"]["id"] == 'odd"id'
    assert doc["properties"]["correlation_id"] == 'odd"id'


def test_only_a_message_with_a_copy_says_so() -> None:
    """The worker's start gate records a delivery from the gateway's copy only if the
    message says the copy exists (``copied``: written with it by submit and requeue)."""
    plain = json.loads(encode_message(_task(str(uuid.uuid4()))))
    copied = json.loads(encode_message(_task(str(uuid.uuid4()), copied=True)))
    assert GATEWAY_COPY not in plain["properties"]
    assert copied["properties"][GATEWAY_COPY] is True
