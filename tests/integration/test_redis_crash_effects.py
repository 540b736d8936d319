"""kill -9 of Redis in the middle of a burst of ``email.send``: every accepted email is
delivered exactly once and every task ends ``succeeded``.

Redis runs with ``appendfsync always`` (``TASKGATE_REDIS_APPENDFSYNC=always`` in `taskgate
up`): nothing it acknowledged is lost with the process. The clients send each email with
its own Idempotency-Key and retry it with the same key after a 503, a 409 or a lost
connection, until it is accepted - a reservation left behind by the crash lapses within
the lease. ``email.send`` records its delivery with ``once`` before the task is
acknowledged, so a run repeated after the crash does not send it again.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.processes import wait_for
from tests.support.stacks import DEMO_MODULES, PrivateStack, SmtpSink, crash_stack
from workers.contract.wire import decode_record, task_key

pytestmark = pytest.mark.integration

EMAILS = 150
KILL_AFTER = 30  # accepted emails before Redis is killed
PACE = 0.1  # seconds each client thread waits after an accepted email: the burst outlasts
# the kill (6 threads: at most ~60 a second, 2 s for the emails after the kill)
# email.send allows 30 a minute per client (retries count too): ten emails per client.
CLIENTS = 15
# The sink answers each message this long after storing it, so that sends are in flight -
# delivered, not yet recorded - when Redis is killed: the window once() has to cover.
REPLY_DELAY = 0.3
MESSAGE_ID = re.compile(rb"^Message-ID: <taskgate\.([0-9a-f-]{36})@", re.MULTILINE)


# Redis with appendfsync always, the SMTP sink (answering slowly), two workers and the gateway.
stack = crash_stack("redis-crash", modules=DEMO_MODULES, smtp_reply_delay=REPLY_DELAY)


class _Mailer:
    """Submit each email until it is accepted, always under its own Idempotency-Key."""

    def __init__(self, stack: PrivateStack, tokens: list[str], sink: SmtpSink) -> None:
        if stack.gateway is None:
            raise RuntimeError("no gateway")
        self.gateway = stack.gateway
        self.tokens = tokens
        self.password = sink.password
        self.accepted: dict[int, str] = {}
        self.answers: Counter[int] = Counter()
        self.lock = threading.Lock()

    def send(self, index: int) -> None:
        key = f"mail-{index}-{uuid.uuid4()}"
        payload = {
            "to": f"user{index}@example.com",
            "subject": f"Message number {index}",
            "body": f"Hello number {index}\n",
            "smtp_password": self.password,
        }
        deadline = time.monotonic() + 90
        token = self.tokens[index % len(self.tokens)]
        with self.gateway.client(headers={"Authorization": f"Bearer {token}"}) as http:
            while time.monotonic() < deadline:
                try:
                    response = http.post(
                        "/v1/tasks/email.send", json=payload, headers={"Idempotency-Key": key}
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.answers[status] += 1
                    if status == 202:
                        self.accepted[index] = str(response.json()["id"])
                if status == 202:
                    time.sleep(PACE)
                    return
                # As a client honouring Retry-After would (capped: the test has a deadline).
                wait = response.headers.get("retry-after", "") if status else ""
                time.sleep(min(float(wait), 5.0) if wait.isdigit() else 0.3)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def _states(stack: PrivateStack, task_ids: list[str]) -> Counter[str]:
    with stack.redis_client() as client, client.pipeline() as pipe:
        for task_id in task_ids:
            pipe.hgetall(task_key(task_id))
        records = pipe.execute()
    return Counter(decode_record(raw).get("state", "missing") for raw in records)


def _delivered(maildir: list[Path]) -> Counter[str]:
    """How many messages the sink holds per task id (from the Message-ID)."""
    counts: Counter[str] = Counter()
    for path in maildir:
        match = MESSAGE_ID.search(path.read_bytes())
        counts[match.group(1).decode() if match else "no taskgate Message-ID"] += 1
    return counts


def test_redis_kill_9_mid_burst_delivers_every_accepted_email_exactly_once(
    stack: PrivateStack,
) -> None:
    """Redis killed (-9) and restarted on its AOF while emails are submitted and sent:
    every email is accepted once, delivered once, and its task ends succeeded."""
    sink = stack.smtp
    if sink is None:
        raise RuntimeError("the SMTP sink is not running")
    mailer = _Mailer(stack, [stack.new_client().token() for _ in range(CLIENTS)], sink)
    window: dict[str, float] = {}

    def kill_when_under_way() -> None:
        wait_for(lambda: mailer.count() >= KILL_AFTER, timeout=60, what="the burst under way")
        window["down"] = time.monotonic()
        stack.restart_redis(down_for=1.5, kill=True)
        window["up"] = time.monotonic()

    killer = threading.Thread(target=kill_when_under_way)
    killer.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(mailer.send, range(EMAILS)))
    finally:
        killer.join()
    print(f"answers {dict(mailer.answers)}; Redis down for {window['up'] - window['down']:.1f}s")
    assert "down" in window, "Redis was not killed"
    assert mailer.answers[503] + mailer.answers[0] > 0, "the crash did not overlap the burst"
    assert len(mailer.accepted) == EMAILS, "an email was never accepted"
    task_ids = list(mailer.accepted.values())
    assert len(set(task_ids)) == EMAILS

    def all_succeeded() -> Counter[str] | None:
        states = _states(stack, task_ids)
        return states if states["succeeded"] == EMAILS else None

    try:
        wait_for(all_succeeded, timeout=120, what="every email task succeeded", interval=1)
    except AssertionError:
        raise AssertionError(f"final states {_states(stack, task_ids)}") from None
    delivered = wait_for(
        lambda: (d := _delivered(sink.messages())) and sum(d.values()) >= EMAILS and d,
        timeout=30,
        what="every message in the sink",
    )
    assert delivered == Counter(dict.fromkeys(task_ids, 1)), {
        task_id: count for task_id, count in delivered.items() if count != 1
    }
