"""The demo tasks through the real gateway and worker: email.send, image.thumbnail, report.generate.

A private stack loads the demo modules (as `taskgate up` does) with the local SMTP sink
as a child process. Refusals inside a task (a pixel bomb, a URL that resolves to
loopback) are not retryable errors, so the worker dead-letters them at once: that is the
documented rule ("after the last attempt - or at once for an error not listed as
retryable"), and what these tests pin down.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from certs.material import CertPaths
from tests.support.gateways import ApiClient
from tests.support.processes import wait_for
from tests.support.stacks import DEMO_MODULES, PrivateStack, SmtpSink, start_stack
from workers.contract.deadletters import dlq_key
from workers.contract.keys import once_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    pki: CertPaths,
    stack_env: dict[str, str],
    admin_token: str,
) -> Iterator[PrivateStack]:
    """A private Redis, SMTP sink, worker and gateway running the demo tasks."""
    stack = start_stack(
        tmp_path_factory.mktemp("demo"),
        pki=pki,
        stack_env=stack_env,
        admin_token=admin_token,
        modules=DEMO_MODULES,
    )
    try:
        stack.start_smtp_sink()  # before the worker: it adds TASKGATE_SMTP_HOST/PORT
        stack.start_worker(concurrency=2)
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def owner(stack: PrivateStack) -> ApiClient:
    return stack.new_client()


def _sink(stack: PrivateStack) -> SmtpSink:
    if stack.smtp is None:
        raise RuntimeError("the SMTP sink is not running")
    return stack.smtp


def _submit(http: httpx.Client, name: str, payload: dict[str, Any]) -> str:
    response = http.post(f"/v1/tasks/{name}", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _finished(stack: PrivateStack, http: httpx.Client, task_id: str) -> dict[str, Any]:
    """The owner's view once the task is final (and its result or error is stored)."""
    stack.wait_state(task_id, timeout=60)

    def view() -> dict[str, Any] | None:
        body = http.get(f"/v1/tasks/{task_id}").json()
        return dict(body) if "result" in body or isinstance(body.get("error"), dict) else None

    return dict(wait_for(view, timeout=20, what=f"the outcome of {task_id}"))


def _every_key_dumped(client: redis.Redis) -> bytes:
    dumps: list[bytes] = []
    for key in client.scan_iter(count=1000):
        dumps.append(key)
        dumped = client.dump(key)
        if isinstance(dumped, bytes):
            dumps.append(dumped)
    return b"\n".join(dumps)


def _rewrite_aof(client: redis.Redis) -> None:
    """BGREWRITEAOF and wait for it, so the rewritten file is scanned too."""
    client.bgrewriteaof()

    def rewritten() -> bool:
        info = client.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    wait_for(rewritten, timeout=30, what="the AOF rewrite")


def _png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height))
    for x in range(0, width, 8):
        for y in range(0, height, 8):
            image.putpixel((x, y), (x % 256, y % 256, 128))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _png_header_claiming(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose header claims ``width`` x ``height`` pixels (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def test_email_send_reaches_the_smtp_sink_and_the_password_is_nowhere_at_rest(
    stack: PrivateStack, owner: ApiClient
) -> None:
    """The mail reaches the sink; the password is in no Redis key, AOF file, log or mail."""
    sink = _sink(stack)
    password = sink.password
    # Unique, but words and a short number: a random-looking run here (say a 48-hex one)
    # is what the leak guard rightly refuses as a possible key (it measures the entropy).
    canary = f"canary body number {uuid.uuid4().int % 10**15}"
    before = set(sink.messages())
    with owner.http() as http:
        task_id = _submit(
            http,
            "email.send",
            {
                "to": "alice@example.com",
                "subject": "Quarterly numbers",
                "body": f"Hello Alice,\n{canary}\n",
                "smtp_password": password,
            },
        )
        view = _finished(stack, http, task_id)
    assert view["status"] == "succeeded", view
    assert view["result"]["delivered"] is True
    new = [path for path in sink.messages() if path not in before]
    assert len(new) == 1
    mail = new[0].read_bytes()
    assert canary.encode() in mail
    assert b"Subject: Quarterly numbers" in mail
    # Every run of this task would send the same Message-ID, and the delivery is recorded
    # as done before the task is acknowledged (workers.once).
    assert f"Message-ID: <taskgate.{task_id}@".encode() in mail
    assert view["result"]["message_id"].startswith(f"<taskgate.{task_id}@")
    with stack.redis_client() as client:
        assert client.hexists(once_key(task_id), "deliver")
    assert stack.vault_keys(task_id) == [], "the secret outlived the task"

    with stack.redis_client() as client:
        _rewrite_aof(client)
        everything = _every_key_dumped(client)
    assert task_id.encode() in everything  # routing metadata is in the clear, by design
    files = [p for p in stack.redis.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".aof") for p in files)
    files += [*stack.log_files(), stack.redis.child.log_path, *new]
    for needle in (password.encode(), base64.b64encode(password.encode())):
        assert needle not in everything, "the SMTP password is in a Redis key"
        for path in files:
            assert needle not in path.read_bytes(), f"the SMTP password is in {path}"
    assert canary.encode() not in everything, "the mail body is readable in Redis"


def test_image_thumbnail_of_a_real_png_comes_back_bounded(
    stack: PrivateStack, owner: ApiClient
) -> None:
    """A 640x480 PNG becomes a PNG within 64x64, aspect kept, original size reported."""
    image = base64.b64encode(_png(640, 480)).decode()
    with owner.http() as http:
        task_id = _submit(
            http, "image.thumbnail", {"image_base64": image, "max_width": 64, "max_height": 64}
        )
        view = _finished(stack, http, task_id)
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert (result["width"], result["height"]) == (64, 48)
    assert (result["original_width"], result["original_height"]) == (640, 480)
    with Image.open(io.BytesIO(base64.b64decode(result["image_base64"]))) as thumb:
        assert thumb.format == "PNG"
        assert thumb.size == (64, 48)


def _assert_failed_for_good_at_once(
    stack: PrivateStack, view: dict[str, Any], task_id: str, error: str
) -> None:
    """An input the task refuses fails at once: no retry, no dead letter (replay is futile)."""
    assert view["status"] == "failed", view
    assert view["error"] == {"type": error, "detail": None, "attempt": 1}
    assert view["attempts"] == 1
    with stack.redis_client() as client:
        assert not client.exists(dlq_key(task_id))
        assert client.keys(f"tg:vault:{task_id}:*") == []


def test_image_thumbnail_refuses_a_20000_by_20000_png_bomb(
    stack: PrivateStack, owner: ApiClient
) -> None:
    """A tiny PNG claiming 400 million pixels is refused from its header, not decoded."""
    bomb = base64.b64encode(_png_header_claiming(20_000, 20_000)).decode()
    with owner.http() as http:
        task_id = _submit(http, "image.thumbnail", {"image_base64": bomb})
        view = _finished(stack, http, task_id)
    _assert_failed_for_good_at_once(stack, view, task_id, "InputRejectedError")
    assert "result" not in view


def test_image_thumbnail_refuses_a_url_that_resolves_to_loopback_without_connecting(
    stack: PrivateStack, owner: ApiClient
) -> None:
    """A name resolving to 127.0.0.1 is refused by the worker's fetch before any connect."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        with owner.http() as http:
            task_id = _submit(http, "image.thumbnail", {"url": f"https://localhost:{port}/x.png"})
            view = _finished(stack, http, task_id)
        with pytest.raises(BlockingIOError):
            listener.accept()
    _assert_failed_for_good_at_once(stack, view, task_id, "UnsafeURLError")


def test_image_thumbnail_with_a_loopback_ip_literal_is_refused_by_the_gateway(
    stack: PrivateStack, owner: ApiClient
) -> None:
    """https://127.0.0.1/x.png is refused at submission (422): nothing is queued."""
    with owner.http() as http:
        response = http.post("/v1/tasks/image.thumbnail", json={"url": "https://127.0.0.1/x.png"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "127.0.0.1" not in response.text


def test_report_result_is_readable_by_its_owner_only(stack: PrivateStack, owner: ApiClient) -> None:
    """Owner reads the result; another client gets 404; the admin sees metadata only."""
    payload = {
        "title": "Sales",
        "columns": ["city", "sales"],
        "rows": [["Oslo", 12], ["=HYPERLINK(1)", 7], ["Pune", 9]],
    }
    with owner.http() as http:
        task_id = _submit(http, "report.generate", payload)
        view = _finished(stack, http, task_id)
    assert view["status"] == "succeeded", view
    result = view["result"]
    assert result["row_count"] == 3
    assert "'=HYPERLINK(1)" in result["csv"]  # spreadsheet formula neutralised
    assert result["summary"]["sales"]["sum"] == 28

    other = stack.new_client()
    with other.http() as http:
        theirs = http.get(f"/v1/tasks/{task_id}")
        missing = http.get(f"/v1/tasks/{uuid.uuid4()}")
        assert task_id not in {item["id"] for item in http.get("/v1/tasks").json()["items"]}
        assert http.delete(f"/v1/tasks/{task_id}").status_code == 404
    assert theirs.status_code == 404
    # Someone else's task and a task that does not exist look the same.
    assert missing.status_code == 404
    assert theirs.json()["detail"] == missing.json()["detail"]
    assert "Oslo" not in theirs.text

    with stack.admin_http() as admin:
        seen = admin.get(f"/v1/tasks/{task_id}")
        inspected = admin.get(f"/v1/admin/tasks/{task_id}")
    assert seen.status_code == 200
    assert seen.json()["status"] == "succeeded"
    assert seen.json()["task"] == "report.generate"
    assert "result" not in seen.json()
    assert inspected.status_code == 200
    assert inspected.json()["owner"] == owner.client_id
    assert "result" not in inspected.json()
    assert "Oslo" not in seen.text + inspected.text
