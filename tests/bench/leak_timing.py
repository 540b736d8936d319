"""Per-call time of the leak guard on a few payload shapes (``python -m tests.bench.leak_timing``).

Not a pytest benchmark: a plain ``timeit`` run, best of several repeats, so that a busy
machine inflates the numbers as little as possible. ``docs/leak-guard.md`` quotes it.
"""

from __future__ import annotations

import base64
import hashlib
import random
import timeit
import uuid
from typing import Any

from security.leakguard import scan
from tests.bench.workload import SECRET_FIELDS, sample_payload

__all__ = ["PAYLOADS", "main"]


def _typical() -> dict[str, Any]:
    """An e-mail style submission: addresses, prose, headers, ids, a digest, a URL."""
    body = sample_payload(1000)["blob"]
    return {
        "to": "alice@example.com",
        "cc": ["bob@example.org", "carol+reports@example.net"],
        "subject": "Quarterly numbers, order ORD-2024-000123",
        "body": body,
        "headers": [
            {"name": "Content-Type", "value": "text/plain; charset=utf-8"},
            {"name": "X-Request-Id", "value": str(uuid.UUID(int=7))},
        ],
        "attachment_sha256": hashlib.sha256(b"report.pdf").hexdigest(),
        "link": "https://example.com/reports/2024/q2/index.html?page=2",
        "api_key": "declared-secret-value",
    }


def _image(size: int) -> dict[str, Any]:
    """``size`` random bytes behind a PNG signature, base64 wrapped at 76 columns."""
    rng = random.Random(size)  # noqa: S311 - filler bytes, not key material
    data = b"\x89PNG\r\n\x1a\n" + rng.randbytes(size)
    return {"image_base64": base64.encodebytes(data).decode(), "width": 128}


PAYLOADS: dict[str, dict[str, Any]] = {
    "bench 1 KiB prose": sample_payload(1000),
    "typical e-mail": _typical(),
    "prose 64 KiB": sample_payload(64 * 1024),
    "image 48 KiB (64 KiB b64)": _image(48 * 1024),
}


def main(number: int = 200, repeat: int = 7) -> None:
    """Print the best per-call time of :func:`scan` on each payload, in microseconds."""
    for label, payload in PAYLOADS.items():
        calls = max(1, number * 1024 // max(1024, len(str(payload))))
        best = min(
            timeit.repeat(
                lambda p=payload: scan(p, secret_paths=SECRET_FIELDS),
                number=calls,
                repeat=repeat,
            )
        )
        print(f"{label:28} {best / calls * 1e6:10.1f} us/call")


if __name__ == "__main__":
    main()
