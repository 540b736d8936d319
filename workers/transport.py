"""kombu's Redis transport, hardened for a Redis restart under a consuming worker.

Recording in flight: kombu pops a message (BRPOP) and *then* records it as unacknowledged
(``QoS.append``). If Redis goes away between the two, the append raises and the popped
message - now only in this process's memory - was dropped. Here the append is retried
until Redis answers again (bounded), so the message is recorded and runs.

kombu counts a message as delivered until its ack (or reject) reaches Redis. When Redis is
unreachable at that moment the call raises and the message stays counted; once every
prefetch slot is held that way (prefetch 1 per process), the consumer stops polling BRPOP,
so it never reads the broken socket, never notices the lost connection, and never
consumes again until the worker is restarted. Here a failed ack or reject still frees the
slot locally; the message itself stays in Redis's ``unacked`` hash and is handed out again
after the visibility timeout - the same path as a killed worker's messages.

One synchronous client per pool (``Channel._create_client``): kombu otherwise builds a new
client object for every append, ack and restore.

Settled deliveries: a declared task's success commit removes its own delivery from the
``unacked`` hash and index in the same atomic script that records the completion
(``workers.execution``), and the request tells the QoS so (``workers.request``). Its ack
then only frees the prefetch slot: no second round trip from the consumer's event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from security.tls import PinnedSSLConnection

__all__ = ["Transport"]

log = logging.getLogger("taskgate.worker")

_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


_APPEND_PATIENCE = 120.0  # seconds to keep a popped message while Redis comes back


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settled: set[Any] = set()

    def settled_by_task(self, delivery_tag: Any) -> None:
        """The task's own final write already removed ``delivery_tag`` from Redis."""
        self._settled.add(delivery_tag)

    def append(self, message: Any, delivery_tag: Any) -> None:
        deadline = time.monotonic() + _APPEND_PATIENCE
        delay = 0.1
        while True:
            try:
                super().append(message, delivery_tag)
                return
            except _UNREACHABLE:
                if time.monotonic() > deadline:
                    raise
                log.warning("redis unreachable while recording a delivery; retrying")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def ack(self, delivery_tag: Any) -> None:
        if delivery_tag in self._settled:
            self._settled.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # acknowledged in Redis by the task's commit
            return
        try:
            super().ack(delivery_tag)
        except _UNREACHABLE:
            virtual.QoS.ack(self, delivery_tag)  # free the slot; Redis still holds the message
            raise

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._settled.discard(delivery_tag)
        try:
            super().reject(delivery_tag, requeue=requeue)
        except _UNREACHABLE:
            virtual.QoS.ack(self, delivery_tag)
            raise


class Channel(kombu_redis.Channel):
    QoS = QoS
    # Redis verified against the configured CA alone, not the system bundle as well.
    connection_class_ssl = PinnedSSLConnection

    def _create_client(self, asynchronous: bool = False) -> Any:
        """One synchronous client per connection pool, not one per call.

        kombu builds a new ``redis.Redis`` around its pool for every append, ack and restore;
        with redis-py 8 building one costs about 60 microseconds (response callbacks, event
        dispatcher), up to two per task on the consumer's event loop. The client holds no
        per-call state (connections come from the pool), and it is rebuilt if kombu
        replaces the pool.
        """
        base: Any = super()  # kombu's stubs do not declare this private method
        if asynchronous:
            return base._create_client(asynchronous=True)
        cached = self.__dict__.get("_taskgate_client")
        if cached is None or cached.connection_pool is not self.pool:
            cached = base._create_client()
            self.__dict__["_taskgate_client"] = cached
        return cached


class Transport(kombu_redis.Transport):
    Channel = Channel
