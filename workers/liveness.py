"""Deliveries held by live workers: attributed, fenced, renewed, and reclaimed at once.

Why: kombu's Redis transport hands a message out again only once its delivery is older
than the visibility timeout (20 minutes by default: the longest run plus the longest retry
delay plus a margin). A worker that dies would hold its work that long.

Attributed: every delivery recorded in flight (kombu's ``unacked`` hash) also gets an entry
in :data:`INFLIGHT` - field the delivery tag, value the holder's *ownership token*
``{worker id}/{nonce}-{sequence}``: the worker instance (its heartbeat member,
``workers.contract.heartbeat``), a nonce of its main process (a restarted container keeps
hostname and pid) and a number that process never hands out twice. The
consumer writes it in the same MULTI as kombu's own record, or the start gate in the
script that records the delivery (``workers.celery_ext.transport``, ``workers.lifecycle``). A
delivery
tag is kept when kombu puts a message back, so the token, not the tag, tells one delivery
of a message from the next.

Fenced: the start gate starts a run only if the delivery's entry still holds this token; a
success commits only if it still does (the audit append's fence, ``security.audit.store``);
the main process's ack and requeue touch Redis only if it still does (:data:`FENCED_ACK`).
A worker that was paused (SIGSTOP, a long stall) and whose deliveries were reclaimed
meanwhile finds the entry gone or another holder's: its start is refused, its result is
discarded and the refusal audited (``task.commit_refused``).

Renewed and reclaimed: on every heartbeat (``workers.heartbeat``) one script renews the
delivery time of this worker's own deliveries in kombu's index (so a run longer than the
visibility timeout is never handed out again while its worker lives), drops entries whose
delivery is no longer in flight, and names the deliveries whose holder's heartbeat lapsed
(or is gone). Each of those is put back at the consuming end of its queue, flagged
redelivered as kombu does, in one compare-and-move script: only if the entry still holds
the lapsed holder's token and the in-flight record is unchanged, so two live workers
reclaiming at once move it once. Each reclaim is audited (``task.reclaimed``). The
visibility timeout remains the last resort for deliveries without an entry.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from security.lua import lua_script
from workers.contract.heartbeat import WORKERS, worker_id
from workers.contract.keys import INFLIGHT, KOMBU_UNACKED, KOMBU_UNACKED_INDEX
from workers.contract.wire import TASK_ID

__all__ = ["FENCED_ACK", "INFLIGHT", "Liveness", "Reclaimed", "TokenSource", "holder_of"]

log = logging.getLogger("taskgate.worker")

_QUEUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")

# What it does, its KEYS and ARGV: the comment at the top of fenced_ack.lua.
FENCED_ACK = lua_script("workers", "fenced_ack.lua")

# What it does, its KEYS and ARGV: the comment at the top of liveness_tend.lua.
_TEND = lua_script("workers", "liveness_tend.lua")

# What it does, its KEYS and ARGV: the comment at the top of liveness_reclaim.lua.
_RECLAIM = lua_script("workers", "liveness_reclaim.lua")


def holder_of(token: str) -> str:
    """The worker id in an ownership token (``{worker id}/{sequence}``)."""
    return token.rpartition("/")[0]


class TokenSource:
    """Ownership tokens of one worker instance's main process: never the same twice, and
    told apart from an earlier process's with the same member (``{member}/{nonce}-{n}``)."""

    def __init__(self, member: str | None = None) -> None:
        self._member = member
        self._nonce = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._last = 0
        self._held: set[str] = set()
        self._lock = threading.Lock()

    @property
    def member(self) -> str:
        if self._member is None:
            self._member = worker_id()
        return self._member

    @property
    def prefix(self) -> str:
        """What every token of this process starts with."""
        return f"{self.member}/{self._nonce}-"

    def next(self) -> str:
        """A new token, held until :meth:`release`."""
        with self._lock:
            self._last = next(self._counter)
            token = f"{self.prefix}{self._last}"
            self._held.add(token)
            return token

    def release(self, token: str) -> None:
        with self._lock:
            self._held.discard(token)

    def snapshot(self) -> tuple[int, list[str]]:
        """The last sequence number handed out, and the tokens held now."""
        with self._lock:
            return self._last, sorted(self._held)


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """A delivery put back in its queue: its tag, the task it carries (if one), its queue
    and the worker that held it."""

    tag: str
    task_id: str | None
    queue: str
    holder: str


class Liveness:
    """This worker's renewals and reclaims, run by its heartbeat thread after each beat."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        tokens: TokenSource,
        lapse: float,
        on_reclaim: Callable[[Reclaimed], None] | None = None,
    ) -> None:
        self._client = client
        self.tokens = tokens
        self.member = tokens.member
        self.prefix = tokens.prefix
        self.lapse = lapse
        self._tend = client.register_script(_TEND)
        self._reclaim = client.register_script(_RECLAIM)
        self._on_reclaim = on_reclaim

    def tend(self, now: float) -> list[Reclaimed]:
        """Renew the deliveries this process holds; hand back those of lapsed holders and
        those it let go of (raises on a Redis error: the heartbeat logs it and tries again
        at the next beat)."""
        last, held = self.tokens.snapshot()
        lapsed = self._tend(
            keys=[WORKERS, INFLIGHT, KOMBU_UNACKED, KOMBU_UNACKED_INDEX],
            args=[
                self.member,
                f"{now:.6f}",
                f"{self.lapse:.6f}",
                self.prefix,
                str(last),
                *held,
            ],
        )
        done: list[Reclaimed] = []
        for tag, token in zip(lapsed[::2], lapsed[1::2], strict=True):
            reclaimed = self.reclaim(_text(tag), _text(token))
            if reclaimed is not None:
                done.append(reclaimed)
                if self._on_reclaim is not None:
                    self._on_reclaim(reclaimed)
        return done

    def reclaim(self, tag: str, token: str) -> Reclaimed | None:
        """Put the delivery ``tag`` back at the consuming end of its queue if ``token``
        still holds it; None if it moved meanwhile or its record cannot be read (left to
        the visibility timeout)."""
        raw = self._client.hget(KOMBU_UNACKED, tag)
        if raw is None:
            return None
        restored = _restored(_text(raw))
        if restored is None:
            log.warning("in-flight delivery %s: record unreadable; left to the timeout", tag)
            return None
        message, queue, task_id = restored
        moved = self._reclaim(
            keys=[INFLIGHT, KOMBU_UNACKED, KOMBU_UNACKED_INDEX, queue],
            args=[tag, token, raw, message],
        )
        if not int(moved):
            return None
        log.warning(
            "task %s: delivery of %s (no longer beating, or let go of) re-queued",
            task_id or "?",
            holder_of(token),
        )
        return Reclaimed(tag, task_id, queue, holder_of(token))


def _restored(raw: str) -> tuple[str, str, str | None] | None:
    """kombu's ``[message, exchange, routing key]`` record -> the message as kombu restores
    it (flagged redelivered), the queue (the routing key, priority 0) and its task id."""
    try:
        message, _exchange, routing_key = json.loads(raw)
        headers, properties = message["headers"], message["properties"]
        headers["redelivered"] = True
        properties["delivery_info"]["redelivered"] = True
        priority = properties.get("priority") or 0
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(routing_key, str) or not _QUEUE.fullmatch(routing_key) or priority:
        return None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    valid = task_id if isinstance(task_id, str) and TASK_ID.fullmatch(task_id) else None
    return json.dumps(message), routing_key, valid


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
