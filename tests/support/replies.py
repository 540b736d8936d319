"""Redis replies as the tests read them, and commands redis-py leaves untyped.

redis-py types a reply as ``bytes | str`` (``str`` when a client decodes responses) and a
stream read as possibly ``None``. The test clients never decode responses: these helpers
say so once, and fail loudly if a reply is not what such a client returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:  # the response aliases are redis-py 8's
    from redis.typing import StreamIdT, StreamRangeResponse

__all__ = ["as_bytes", "as_fields", "as_text", "raw_command", "stream_range"]


def as_bytes(value: object) -> bytes:
    """``value``, a reply of a client that does not decode responses, as the bytes it is."""
    if not isinstance(value, bytes):
        raise TypeError(f"expected a bytes reply, got {type(value).__name__}")
    return value


def as_text(value: object) -> str:
    """``value``, a bytes reply, decoded as UTF-8."""
    return as_bytes(value).decode()


def as_fields(fields: Mapping[bytes | str, bytes | str] | None) -> dict[bytes, bytes]:
    """A hash (HGETALL) or a stream entry's fields, bytes to bytes."""
    if fields is None:
        raise AssertionError("no fields in the reply")
    return {as_bytes(name): as_bytes(value) for name, value in fields.items()}


def raw_command(client: redis.Redis, *args: str | int | bytes) -> Any:
    """``client.execute_command(*args)``: a raw command, its reply as redis-py parses it."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py


def stream_range(
    client: redis.Redis,
    name: str,
    min: StreamIdT = "-",
    max: StreamIdT = "+",
    count: int | None = None,
) -> StreamRangeResponse:
    """``client.xrange(...)``: the entries, never None (an absent stream reads as empty)."""
    page = client.xrange(name, min, max, count)
    if page is None:
        raise AssertionError(f"XRANGE {name} gave no reply")
    return page
