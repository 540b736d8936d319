"""What the benchmarks send: the bench task's name and a ~1 KiB payload with one secret.

Kept apart from ``bench_tasks`` so importing it registers no task in this process.
"""

from __future__ import annotations

__all__ = ["TASK_MODULE", "TASK_NAME", "sample_payload"]

TASK_MODULE = "tests.bench.bench_tasks"
TASK_NAME = "bench.noop"
SECRET_FIELDS = ("api_key",)


def sample_payload(size: int = 1000) -> dict[str, str]:
    """A ~``size``-character prose blob (nothing the leak guard would flag) and a key."""
    words = "the quick brown fox jumps over a lazy dog while seven tired clerks file reports "
    blob = (words * (size // len(words) + 1))[:size]
    return {"blob": blob, "api_key": "bench-api-key-not-a-real-secret"}
