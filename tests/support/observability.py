"""One run of every path a task can take, with canaries, for the observability tests.

:func:`run_every_path` submits over HTTPS (with a known ``X-Request-ID`` each) a task that
succeeds, one that fails and is dead-lettered, one that refuses its input (failed), one
retried then succeeding, one retried until dead-lettered; a submission the gateway refuses
(validation); and two messages a worker refuses: one unsealed, one sealed for another task.
Both canaries are in every payload, return value and exception message.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keystore import load_keys
from tests.support.processes import wait_for
from tests.support.stacks import PrivateStack
from workers.contract.wire import DEFAULT_QUEUE

OBS_MODULES = '["tests.integration.observability_tasks"]'
# task name -> its final state in the task record
PATHS = {
    "obs.echo": "succeeded",
    "obs.fails": "dead_lettered",
    "obs.rejects": "failed",
    "obs.flaky": "succeeded",
    "obs.always_retries": "dead_lettered",
    "obs.hangs": "dead_lettered",  # stopped at its hard time limit
}


@dataclass
class Canaries:
    # Digits, not hex: a long random hex string in a field not declared secret is what
    # the leak guard refuses (high entropy) - the payload canary must pass it.
    payload: str = field(default_factory=lambda: f"canary-payload-{secrets.randbelow(10**9):09d}")
    secret: str = field(default_factory=lambda: f"canarysecret{uuid.uuid4().hex}")

    def all(self) -> tuple[str, str]:
        return self.payload, self.secret


@dataclass
class PathsRun:
    """What :func:`run_every_path` submitted: task id -> (name, request id)."""

    tasks: dict[str, tuple[str, str]]
    refused: list[str]  # task ids of the messages a worker refused


def run_every_path(stack: PrivateStack, canaries: Canaries) -> PathsRun:
    client = stack.new_client()
    tasks: dict[str, tuple[str, str]] = {}
    with client.http() as http:
        for name in PATHS:
            request_id = f"rid-{uuid.uuid4().hex}"
            response = http.post(
                f"/v1/tasks/{name}",
                json={"note": canaries.payload, "token": canaries.secret},
                headers={"X-Request-ID": request_id},
            )
            assert response.status_code == 202, response.text
            tasks[str(response.json()["id"])] = (name, request_id)
        refused = http.post(
            "/v1/tasks/obs.echo",
            json={"note": canaries.payload, "token": canaries.secret, canaries.payload: 1},
        )
        assert refused.status_code == 422, refused.text
    refused_ids = _refused_messages(stack, canaries)
    for task_id, (name, _rid) in tasks.items():
        assert stack.wait_state(task_id, timeout=60)["state"] == PATHS[name], name
    return PathsRun(tasks=tasks, refused=refused_ids)


def _refused_messages(stack: PrivateStack, canaries: Canaries) -> list[str]:
    """An unsealed message (refused by the worker's main process) and a sealed one bound
    to another task (refused by the pool process), both quoting the canaries."""
    quoted = {"payload": {"note": canaries.payload, "token": canaries.secret}}
    unsealed_id = str(uuid.uuid4())
    unsealed = {
        "body": base64.b64encode(json.dumps([[], quoted, {}]).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": "obs.echo",
            "id": unsealed_id,
            "argsrepr": canaries.payload,
            "kwargsrepr": canaries.secret,
        },
        "properties": {
            "correlation_id": unsealed_id,
            "delivery_info": {"exchange": "", "routing_key": DEFAULT_QUEUE},
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    keys = load_keys(Path(stack.env["TASKGATE_STATE_DIR"]) / "keys", role="gateway")
    codec = SealedCodec(keys, ttl=600)
    moved_id = str(uuid.uuid4())
    body = codec.encode(moved_id, "obs.echo", [], {"payload": {"note": canaries.payload}})
    moved = OutgoingTask(moved_id, "obs.fails", body, codec.content_type, DEFAULT_QUEUE)
    with stack.redis_client() as client:
        client.lpush(DEFAULT_QUEUE, json.dumps(unsealed))
        client.lpush(DEFAULT_QUEUE, encode_message(moved))
        wait_for(lambda: client.llen(DEFAULT_QUEUE) == 0, timeout=30, what="queue drained")
    return [unsealed_id, moved_id]


def log_text(*paths: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())
