"""A kombu connection's channel, typed as the Redis channel it is (kombu types
``Connection.default_channel`` as any transport's)."""

from __future__ import annotations

from kombu.message import Message
from kombu.transport import redis as kombu_redis

from workers.celery_ext.transport import Channel

__all__ = ["broker_channel", "delivery_tag", "redis_channel"]


def redis_channel(channel: object) -> kombu_redis.Channel:
    """``channel`` as a channel of kombu's Redis transport (taskgate's or kombu's own)."""
    if not isinstance(channel, kombu_redis.Channel):
        raise TypeError(f"expected a Redis channel, got {type(channel).__name__}")
    return channel


def broker_channel(channel: object) -> Channel:
    """``channel`` as the broker channel taskgate's transport installs."""
    if not isinstance(channel, Channel):
        raise TypeError(f"expected taskgate's broker channel, got {type(channel).__name__}")
    return channel


def delivery_tag(message: Message) -> str:
    """The delivery tag of ``message``, a message the channel delivered (so it has one)."""
    if message.delivery_tag is None:
        raise AssertionError("a delivered message without a delivery tag")
    return message.delivery_tag
