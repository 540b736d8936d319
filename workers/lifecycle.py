"""A task's lifecycle in Redis, as the worker sees it: one round trip per transition.

States: queued (gateway) -> started -> retried -> ... -> succeeded | failed |
dead_lettered | revoked. Timings and attempts go to the task record for the status
endpoint; nothing of the payload ever does. The completion record (``tg:done:{id}``)
lets a redelivered message whose earlier run already finished be acknowledged, not run.
The start gate also counts the runs of an attempt (field ``runs``): one that finds the
same attempt still started follows a run that was cut off, and past ``max_runs`` of those
the gate does not start the task (the worker dead-letters it).

Each transition is a small Lua script so that check-and-mark is atomic and costs one
round trip (the worker's per-task overhead is what the worker benchmark measures;
the scripts are in ``workers.lifecycle_scripts``).
The scripts touch the owner's queued set by a computed name, so the task's keys must live
on one Redis node (no cluster).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from security.audit.store import DEFAULT_STREAM, head_key
from workers.contract.keys import INFLIGHT, QUEUED_PREFIX
from workers.contract.states import TaskState
from workers.contract.wire import (
    GLOBAL_QUEUED,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    done_key,
    message_copy_key,
    revoked_key,
    task_key,
)
from workers.lifecycle_scripts import FINISH_SCRIPT, GATE_SCRIPT

__all__ = ["AUDIT_HEAD", "Gate", "GateCall", "Lifecycle"]

AUDIT_HEAD = head_key(DEFAULT_STREAM)


@dataclass(frozen=True)
class Gate:
    """What the worker learned before running: may it run, and who owns the task."""

    revoked: bool
    done: bool
    owner: str
    blobs: dict[str, bytes | None] = field(default_factory=dict)
    audit_head: str = ""  # the audit chain's head as the gate saw it ("" if none yet)
    runs: int = 1  # starts of this attempt, this one included (0: not started)
    too_many_runs: bool = False  # not started: the attempt's runs kept being interrupted
    recorded: bool = False  # the gate recorded the delivery in flight from the copy
    marker_ready: bool = False  # the seal's marker bucket exists: final writes may add to it
    ended: bool = False  # not started: this seal's final marker says a run already ended
    held: bool = True  # False: the delivery was reclaimed from this worker; not started
    run_count: int = 0  # runs of the task so far, this one included (0: not started)


class Lifecycle:
    """The lifecycle scripts, registered once per Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._gate = client.register_script(GATE_SCRIPT)
        self._finish = client.register_script(FINISH_SCRIPT)

    def open_gate(
        self,
        task_id: str,
        attempt: int,
        *,
        vault: Sequence[str] = (),
        max_runs: int = 3,
        delivery: Sequence[str] = (),
        marker: tuple[str, str] | None = None,
        fence: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> Gate:
        """Revoked? Already done? Run ``max_runs`` times already for this attempt, each
        run cut off? If none of these, mark started and fetch the ``vault`` entries;
        leave the queued sets and drop the sweeper's message copy either way. A
        ``delivery`` (tag, exchange, routing key) the consumer left to the gate is recorded
        in flight from that copy first (``workers.celery_ext.transport``). A ``marker`` (bucket,
        field) found set means this seal's run already ended (``Gate.ended``): not started
        either. One round trip."""
        keys, args = _gate_arguments(
            task_id,
            attempt,
            vault=vault,
            max_runs=max_runs,
            delivery=delivery,
            marker=marker,
            fence=fence,
            now=now,
        )
        return _gate_reply(self._gate(keys=keys, args=args), vault, max_runs)

    def send_gate(
        self,
        task_id: str,
        attempt: int,
        *,
        vault: Sequence[str] = (),
        max_runs: int = 3,
        delivery: Sequence[str] = (),
        marker: tuple[str, str] | None = None,
        fence: tuple[str, str] | None = None,
    ) -> GateCall:
        """:meth:`open_gate`, sent now and read later by :meth:`GateCall.result`: the caller
        does other work while Redis runs the script (see :class:`GateCall`)."""
        keys, args = _gate_arguments(
            task_id,
            attempt,
            vault=vault,
            max_runs=max_runs,
            delivery=delivery,
            marker=marker,
            fence=fence,
            now=None,
        )
        return GateCall(
            self._client, self._gate, keys=keys, args=args, vault=vault, max_runs=max_runs
        )

    def finish(
        self,
        task_id: str,
        state: TaskState,
        *,
        ttl: int,
        error: str = "",
        delete: Sequence[str] = (),
        marker: tuple[str, str] | None = None,
        now: float | None = None,
        fence: tuple[str, str] | None = None,
    ) -> bool:
        """Record the final state (succeeded also writes the completion record, and any
        final state the seal's ``marker``) and delete ``delete`` (the task's vault
        entries) in the same round trip. With a ``fence`` (delivery tag, ownership token):
        only while that token holds the delivery; False, writing nothing, if it does not."""
        bucket, field = marker if marker is not None else (task_key(task_id), "")
        tag, token = fence if fence is not None else ("", "")
        done = self._finish(
            keys=[task_key(task_id), done_key(task_id), bucket, INFLIGHT, *delete],
            args=[state, f"{now or time.time():.6f}", error, str(ttl), field, tag, token],
        )
        return bool(int(done))

    def retried(
        self, task_id: str, reason: str, delay: float, *, fence: tuple[str, str] | None = None
    ) -> bool:
        """Record a retry with its (redacted) reason and delay (fenced as :meth:`finish`)."""
        tag, token = fence if fence is not None else ("", "")
        done = self._finish(
            keys=[task_key(task_id), done_key(task_id), task_key(task_id), INFLIGHT],
            args=[
                TaskState.RETRIED,
                f"{time.time():.6f}",
                f"{reason}; retry in {delay:.1f}s",
                "1",
                "",
                tag,
                token,
            ],
        )
        return bool(int(done))


class GateCall:
    """The start gate sent ahead: written to the connection at once, its reply read by
    :meth:`result`, so that the worker checks the envelope's signature while Redis runs
    the script (``workers.execution.task``).

    Until :meth:`result` or :meth:`abandon` is called, the client holds the reply unread:
    nothing else may use it, so the connection's lock is held (a pool process uses its
    client from one thread; another thread would wait). :meth:`abandon` reads and drops the
    reply, or drops the connection if that fails, and is a no-op once the reply was read.
    A client without one dedicated connection, or a send that fails, falls back to
    :meth:`Lifecycle.open_gate` in :meth:`result` - as does a reply saying that Redis lost
    its scripts (a restart).
    """

    def __init__(
        self,
        client: redis.Redis,
        script: Any,
        *,
        keys: list[str],
        args: list[str],
        vault: Sequence[str],
        max_runs: int,
    ) -> None:
        self._client = client
        self._script = script
        self._keys, self._args = keys, args
        self._vault, self._max_runs = list(vault), max_runs
        self._conn: Any = None
        conn = getattr(client, "connection", None)  # set on single-connection clients only
        if conn is None:
            return
        lock = client.single_connection_lock
        lock.acquire()
        try:
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except BaseException as exc:
            conn.disconnect()
            lock.release()
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                return  # result() runs it the usual way: reconnect, with the client's retries
            raise
        self._conn = conn

    def result(self) -> Gate:
        """The gate's outcome (raises what :meth:`Lifecycle.open_gate` raises)."""
        conn, self._conn = self._conn, None
        reply: Any = None
        if conn is not None:
            read = False
            try:
                reply = self._client.parse_response(conn, "EVALSHA")  # type: ignore[no-untyped-call]
                read = True
            except redis.exceptions.NoScriptError:
                read = True  # the error was the reply; the script is loaded below
            except redis.ResponseError:
                read = True
                raise
            finally:
                if not read:
                    conn.disconnect()  # never leave a reply behind for the next command
                self._client.single_connection_lock.release()
        if reply is None:
            reply = self._script(keys=self._keys, args=self._args)
        return _gate_reply(reply, self._vault, self._max_runs)

    def abandon(self) -> None:
        """Read and drop the reply (the run stopped before it needed it), or drop the
        connection if the reply cannot be read; nothing once :meth:`result` was called."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        read = False
        try:
            self._client.parse_response(conn, "EVALSHA")  # type: ignore[no-untyped-call]
            read = True
        except redis.ResponseError:
            read = True
        except (redis.RedisError, OSError):  # the connection is dropped below
            pass
        finally:
            if not read:
                conn.disconnect()
            self._client.single_connection_lock.release()


def _gate_arguments(
    task_id: str,
    attempt: int,
    *,
    vault: Sequence[str],
    max_runs: int,
    delivery: Sequence[str],
    marker: tuple[str, str] | None,
    fence: tuple[str, str] | None = None,
    now: float | None,
) -> tuple[list[str], list[str]]:
    tag, exchange, routing_key = delivery if delivery else ("", "", "")
    fence_tag, token = fence if fence is not None else ("", "")
    bucket, field = marker if marker is not None else (task_key(task_id), "")
    keys = [
        revoked_key(task_id),
        done_key(task_id),
        task_key(task_id),
        GLOBAL_QUEUED,
        message_copy_key(task_id),
        AUDIT_HEAD,
        KOMBU_UNACKED,
        KOMBU_UNACKED_INDEX,
        bucket,
        INFLIGHT,
        *vault,
    ]
    args = [
        task_id,
        f"{now or time.time():.6f}",
        str(attempt),
        QUEUED_PREFIX,
        str(max_runs),
        tag,
        exchange,
        routing_key,
        field,
        fence_tag,
        token,
    ]
    return keys, args


def _gate_reply(reply: Any, vault: Sequence[str], max_runs: int) -> Gate:
    revoked, done, owner, audit_head, runs, recorded, marker, held, run_count, *values = reply
    owner_text = owner.decode() if isinstance(owner, bytes) else str(owner or "")
    head_text = audit_head.decode() if isinstance(audit_head, bytes) else str(audit_head)
    blobs = {
        key: (v if isinstance(v, bytes) else None) for key, v in zip(vault, values, strict=False)
    }
    return Gate(
        revoked=bool(int(revoked)),
        done=bool(int(done)),
        owner=owner_text,
        blobs=blobs,
        audit_head=head_text,
        runs=int(runs),
        too_many_runs=int(runs) > max_runs,
        recorded=bool(int(recorded)),
        marker_ready=int(marker) >= 1,
        ended=int(marker) == 2,
        held=bool(int(held)),
        run_count=int(run_count),
    )
