"""The metrics tests' deployment and the requests their run makes, and scraping it.

The canaries every run carries, a deployment of gateways over one private stack, a
submission, an envelope forged by an impostor signer, and ``/metrics`` read as samples.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from gateway.submission.codec import SealedCodec
from gateway.submission.publisher import OutgoingTask, encode_message
from security.keys import SigningKey
from security.keystore import KeyRing
from security.sealing import seal
from tests.support.gateways import Gateway
from tests.support.stacks import PrivateStack
from workers.contract.wire import DEFAULT_QUEUE

PAYLOAD_CANARY = f"canary-payload-{uuid.uuid4().hex}"
SECRET_CANARY = f"canary-secret-{uuid.uuid4().hex}"
Q = DEFAULT_QUEUE
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gateway: Gateway, admin_token: str) -> tuple[str, Samples]:
    """A gateway's ``/metrics`` as text and as samples keyed by name and sorted labels."""
    with gateway.client(headers={"Authorization": f"Bearer {admin_token}"}) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    return response.text, samples


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name``, keyed by their labels."""
    return {labels: value for (n, labels), value in samples.items() if n == name}


def task_labels(name: str) -> tuple[tuple[str, str], ...]:
    """The labels of a task's series on the default queue."""
    return (("name", name), ("queue", Q))


@dataclass
class Deployment:
    """One private stack and the gateway processes over it, oldest first."""

    stack: PrivateStack
    gateways: list[Gateway]


def submit(http: httpx.Client, name: str, note: str, status: int = 202) -> str:
    """Submit ``name`` with ``note`` and the secret canary; its task id (on a 202)."""
    body = {"note": note, "token": SECRET_CANARY}
    response = http.post(f"/v1/tasks/{name}", json=body)
    assert response.status_code == status, response.text
    return str(response.json().get("id", "")) if status == 202 else ""


def busy_gauges(gateway: Gateway, admin_token: str) -> dict[Any, float] | None:
    """The running-task gauges, once one of them says 1."""
    active = series(scrape(gateway, admin_token)[1], "celery_worker_tasks_active")
    return active if 1.0 in active.values() else None


def forged_message(keys: KeyRing, task_id: str) -> dict[str, Any]:
    """An envelope for mt.ok under the real broker key, signed by an impostor."""
    private = Ed25519PrivateKey.generate()
    impostor = SigningKey(keys.signing.current().kid, private.public_key(), private)
    body = json.dumps([[], {"payload": {"note": PAYLOAD_CANARY}}, {}]).encode()
    envelope = seal(
        body, task_id=task_id, task_name="mt.ok", keys=keys.broker, signer=impostor, ttl=60
    )
    message: dict[str, Any] = json.loads(
        encode_message(OutgoingTask(task_id, "mt.ok", envelope, SealedCodec.content_type, Q))
    )
    return message
