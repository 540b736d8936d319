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

Recorded by the start gate: a sealed task message the gateway keeps a copy of
(``tg:msg:{id}``, marked by the ``GATEWAY_COPY`` property), on its first delivery, is not
recorded by the consumer at all (kombu's MULTI/ZADD/HSET/EXEC round trip, on the one
thread that receives every message). The pool process's start gate writes the same
``unacked`` entry from the copy, in the script it runs anyway (``workers.lifecycle``). Until
then the copy is the record: a message popped but never gated (the worker killed, Redis
gone) is pushed back from the copy when kombu restores it, or re-queued by the sweeper
(``workers.sweeper``) if no restore can reach Redis. A redelivered message (restored by
kombu, so its copy is gone) and any message without a copy are recorded as before.

Kept held when the channel closes: kombu puts back every delivered, unacknowledged message
when its channel closes (a lost broker connection, a shutdown), runs still going in the
pool processes included - a second run of the task beside the first. Here those stay held
(``QoS.restore_unacked``); each is settled by its own run.

One synchronous client per pool (``Channel._create_client``): kombu otherwise builds a new
client object for every append, ack and restore.

Held by this worker: every delivery gets an ownership token, recorded beside kombu's
``unacked`` entry (``workers.liveness``): by the consumer in the same MULTI, or by the
start gate. The ack and the requeue touch Redis only while the token still holds the
delivery, so a worker whose delivery was reclaimed (its heartbeat lapsed) never removes or
re-queues the delivery another worker now holds under the same tag.

Settled deliveries: a declared task's success commit removes its own delivery from the
``unacked`` hash and index in the same atomic script that records the completion
(``workers.execution.task``), and the request tells the QoS so (``workers.celery_ext.request``). Its
ack
then only frees the prefetch slot: no second round trip from the consumer's event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.worker import state as worker_state
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from security.lua import lua_script
from security.tls import PinnedSSLConnection
from workers.contract.keys import INFLIGHT
from workers.contract.wire import GATEWAY_COPY, TASK_CONTENT_TYPE, TASK_ID, message_copy_key
from workers.liveness import FENCED_ACK, TokenSource

__all__ = ["TOKENS", "QoS", "Transport", "recorded_by_gate"]

# This worker instance's ownership tokens (its main process consumes; workers.liveness).
TOKENS = TokenSource()

log = logging.getLogger("taskgate.worker")

_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError)


_APPEND_PATIENCE = 120.0  # seconds to keep a popped message while Redis comes back


# What it does, its KEYS and ARGV: the comment at the top of restore_from_copy.lua.
_RESTORE_FROM_COPY = lua_script("workers.celery_ext", "restore_from_copy.lua")


def recorded_by_gate(message: Any) -> bool:
    """Does the worker's start gate, not the consumer, record this delivery as in flight?

    Yes for a sealed task message the gateway keeps a copy of (it names its task by a
    canonical id, the copy's key), on its first delivery. A message kombu restored is
    flagged ``redelivered`` (and its copy was taken by the gate that ran it first): the
    consumer records it.
    """
    properties = getattr(message, "properties", None)
    if not isinstance(properties, dict) or properties.get(GATEWAY_COPY) is not True:
        return False
    if getattr(message, "content_type", None) != TASK_CONTENT_TYPE or _task_id(message) is None:
        return False
    info = properties.get("delivery_info")
    headers = getattr(message, "headers", None)
    return not (isinstance(info, dict) and info.get("redelivered")) and not (
        isinstance(headers, dict) and headers.get("redelivered")
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _task_id(message: Any) -> str | None:
    headers = getattr(message, "headers", None)
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) and TASK_ID.fullmatch(task_id) else None


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settled: set[Any] = set()
        self._gate_records: set[Any] = set()  # delivered, left for the start gate to record
        self._tokens: dict[Any, str] = {}  # delivery tag -> this delivery's ownership token
        self._fenced_ack: Any = None

    def settled_by_task(self, delivery_tag: Any) -> None:
        """The task's own final write already removed ``delivery_tag`` from Redis."""
        self._settled.add(delivery_tag)

    def token_for(self, delivery_tag: Any) -> str | None:
        """The ownership token of this worker's delivery ``delivery_tag`` (None if none)."""
        return self._tokens.get(delivery_tag)

    def _forget(self, delivery_tag: Any) -> None:
        """This process no longer holds the delivery (acknowledged, rejected or restored -
        in Redis or, when Redis was unreachable, only here: then the heartbeat hands it
        back, ``workers.liveness``)."""
        token = self._tokens.pop(delivery_tag, None)
        if token is not None:
            TOKENS.release(token)

    def append(self, message: Any, delivery_tag: Any) -> None:
        token = self._tokens[delivery_tag] = TOKENS.next()
        if recorded_by_gate(message):
            virtual.QoS.append(self, message, delivery_tag)  # in flight here; Redis: the gate
            self._gate_records.add(delivery_tag)
            return
        deadline = time.monotonic() + _APPEND_PATIENCE
        delay = 0.1
        while True:
            try:
                self._record(message, delivery_tag, token)
                return
            except _UNREACHABLE:
                if time.monotonic() > deadline:
                    raise
                log.warning("redis unreachable while recording a delivery; retrying")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _record(self, message: Any, tag: Any, token: str) -> None:
        """kombu's record of a delivery in flight, with its holder's token, in one MULTI."""
        info = message.delivery_info
        entry = dumps([message._raw, info["exchange"], info["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {tag: time.time()})
            pipe.hset(self.unacked_key, tag, entry)
            pipe.hset(INFLIGHT, tag, token)
            pipe.execute()
        virtual.QoS.append(self, message, tag)

    def _remove_held(self, tag: Any) -> None:
        """Remove the delivery from Redis, unless another holder holds it now."""
        token = self._tokens.get(tag) or ""
        channel: Any = self.channel  # kombu's stubs do not declare its private helpers
        with channel.conn_or_acquire() as client:
            if self._fenced_ack is None or self._fenced_ack.registered_client is not client:
                self._fenced_ack = client.register_script(FENCED_ACK)
            self._fenced_ack(
                keys=[INFLIGHT, self.unacked_key, self.unacked_index_key], args=[tag, token]
            )

    def restore_unacked(self, client: Any = None) -> None:
        """kombu's restore when the channel closes (a lost connection, a shutdown), except
        the deliveries whose runs were handed to a pool process (:func:`_in_the_pool`).

        Those runs go on: Celery does not stop them when the broker connection drops
        (``worker_cancel_long_running_tasks_on_connection_loss`` is off), and a warm
        shutdown waits for them. Put back now, such a message would be delivered again at
        once and its start gate - the attempt still ``started`` - would take it for a run
        that was cut off: a second run beside the first, before either recorded its side
        effects. Left held (token and ``unacked`` entry kept), each is settled by its own
        run: the success commit, or the ack, reject or requeue when it ends; if that
        cannot reach Redis, the heartbeat hands the delivery back (``workers.liveness``).
        """
        running = _in_the_pool()
        channel: Any = self.channel  # kombu's stubs do not declare its private helpers
        delivered: Any = self._delivered
        with channel.conn_or_acquire(client) as conn:
            for tag in list(delivered):
                if tag in running:
                    log.info("delivery %s: its run goes on; left held, not put back", tag)
                    continue
                self.restore_by_tag(tag, client=conn)
        delivered.clear()

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        """kombu's restore, only while this delivery is still ours (or no holder is
        recorded for it); and a delivery left to the start gate that the gate never
        recorded goes back from the gateway's copy (still there: no gate took it)."""
        try:
            self._restore_held(tag, client=client, leftmost=leftmost)
        finally:
            self._forget(tag)  # even if Redis is unreachable: the heartbeat hands it back
        left_to_gate = tag in self._gate_records
        self._gate_records.discard(tag)
        delivered: Any = self._delivered
        message: Any = delivered.get(tag) if delivered is not None else None
        task_id = _task_id(message)
        if not left_to_gate or task_id is None:
            return
        channel: Any = self.channel  # kombu's stubs do not declare these private helpers
        info = message.delivery_info or {}
        queues = channel._lookup(info.get("exchange"), info.get("routing_key"))
        if not queues:  # pragma: no cover - kombu falls back to its default queue
            return
        with channel.conn_or_acquire(client) as conn:  # the one queue the gateway pushed to
            restored = conn.eval(
                _RESTORE_FROM_COPY,
                3,
                message_copy_key(task_id),
                self.unacked_key,
                queues[0],
                tag,
                "1" if leftmost else "0",
            )
        if restored:
            log.info("task %s: its message, never started, was put back from its copy", task_id)

    def _restore_held(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        token = self._tokens.get(tag)
        channel: Any = self.channel  # kombu's stubs do not declare its private helpers
        unacked = self.unacked_key

        def restore_transaction(pipe: Any) -> None:
            holder = pipe.hget(INFLIGHT, tag)
            if holder is not None and token is not None and _text(holder) != token:
                pipe.multi()  # another delivery of the message holds the tag: not ours
                return
            raw = pipe.hget(unacked, tag)
            pipe.multi()
            pipe.zrem(self.unacked_index_key, tag).hdel(unacked, tag).hdel(INFLIGHT, tag)
            if raw:
                message, exchange, routing_key = loads(_text(raw))
                channel._do_restore_message(message, exchange, routing_key, pipe, leftmost)

        with channel.conn_or_acquire(client) as conn:
            conn.transaction(restore_transaction, unacked, INFLIGHT)

    def ack(self, delivery_tag: Any) -> None:
        self._gate_records.discard(delivery_tag)
        if delivery_tag in self._settled:
            self._settled.discard(delivery_tag)
            self._forget(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # acknowledged in Redis by the task's commit
            return
        try:
            self._remove_held(delivery_tag)
        except _UNREACHABLE:
            virtual.QoS.ack(self, delivery_tag)  # free the slot; Redis still holds the message
            raise
        finally:
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._settled.discard(delivery_tag)
        try:
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True)
            else:
                self._remove_held(delivery_tag)
        except _UNREACHABLE:
            virtual.QoS.ack(self, delivery_tag)
            raise
        finally:
            self._gate_records.discard(delivery_tag)
            self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)


def _in_the_pool() -> set[Any]:
    """Delivery tags of this worker's requests handed to a pool process and not finished
    (Celery sets ``_apply_result`` when it hands a request over; ``task_ready`` drops it
    from these sets when the request is done). A request not yet handed over is put back:
    when it does run, its start gate refuses it (its delivery is no longer held)."""
    tags: set[Any] = set()
    for request in (*worker_state.reserved_requests, *worker_state.active_requests):
        if getattr(request, "_apply_result", None) is None:
            continue
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag is not None:
            tags.add(tag)
    return tags


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
