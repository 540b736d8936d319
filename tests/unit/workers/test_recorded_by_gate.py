"""Which deliveries the worker's consumer leaves to the start gate to record in flight."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from workers.celery_ext.transport import recorded_by_gate
from workers.contract.wire import GATEWAY_COPY, TASK_CONTENT_TYPE


def _message(
    *,
    copy: Any = True,
    content_type: str = TASK_CONTENT_TYPE,
    redelivered_info: bool = False,
    redelivered_header: bool = False,
    task_id: str = "0c1e38ea-6a15-4cb4-9be7-f04c6f926d93",
) -> SimpleNamespace:
    properties: dict[str, Any] = {"delivery_info": {"exchange": "", "routing_key": "taskgate"}}
    if copy is not None:
        properties[GATEWAY_COPY] = copy
    if redelivered_info:
        properties["delivery_info"]["redelivered"] = True
    headers: dict[str, Any] = {"id": task_id}
    if redelivered_header:
        headers["redelivered"] = True
    return SimpleNamespace(properties=properties, content_type=content_type, headers=headers)


def test_the_first_delivery_of_a_sealed_message_with_a_copy_is_left_to_the_gate() -> None:
    assert recorded_by_gate(_message())


@pytest.mark.parametrize(
    "message",
    [
        _message(copy=None),
        _message(copy="yes"),  # only the gateway's own marker, never a look-alike
        _message(content_type="application/json"),
        _message(redelivered_info=True),
        _message(redelivered_header=True),
        _message(task_id="not-a-uuid"),  # no copy key to record from
        SimpleNamespace(properties=None, content_type=TASK_CONTENT_TYPE, headers={}),
    ],
    ids=[
        "no-copy",
        "odd-marker",
        "not-sealed",
        "redelivered",
        "redelivered-header",
        "odd-id",
        "bare",
    ],
)
def test_every_other_delivery_is_recorded_by_the_consumer(message: SimpleNamespace) -> None:
    """No copy to record from, or the copy is gone (kombu restored it): as kombu does."""
    assert not recorded_by_gate(message)
