"""Per-call time of the leak guard on a few payload shapes (``python -m tests.bench.leak_timing``).

Not a pytest benchmark: a plain ``timeit`` run, best of several repeats, so that a busy
machine inflates the numbers as little as possible. ``docs/leak-guard.md`` quotes it.

Given the path of an older, self-contained ``leakguard.py`` (``git show REV:security/
leakguard.py > /tmp/old.py``), both are timed in turn in one process, so that the load
of the machine weighs on both alike.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import random
import sys
import timeit
import uuid
from collections.abc import Callable
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


Scan = Callable[..., Any]


def _load(path: str) -> Scan:
    spec = importlib.util.spec_from_file_location("leakguard_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    scan_before: Scan = module.scan
    return scan_before


def _per_call(fn: Scan, payload: dict[str, Any], calls: int) -> float:
    """Microseconds per call of ``fn`` over one timed run of ``calls`` calls."""
    seconds = timeit.timeit(lambda: fn(payload, secret_paths=SECRET_FIELDS), number=calls)
    return seconds / calls * 1e6


def main(argv: list[str], number: int = 200, repeat: int = 7) -> None:
    """Print the best per-call time of ``scan`` on each payload, in microseconds."""
    scans = {"after": scan} if not argv else {"before": _load(argv[0]), "after": scan}
    for label, payload in PAYLOADS.items():
        calls = max(1, number * 1024 // max(1024, len(str(payload))))
        best = dict.fromkeys(scans, float("inf"))
        for _ in range(repeat):  # interleaved, so both see the same load
            for name, fn in scans.items():
                best[name] = min(best[name], _per_call(fn, payload, calls))
        shown = "   ".join(f"{name} {us:8.1f} us" for name, us in best.items())
        print(f"{label:28} {shown}")


if __name__ == "__main__":
    main(sys.argv[1:])
