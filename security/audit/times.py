"""Times in the audit views: ISO 8601 in and out (Unix seconds still accepted in).

Records keep Unix seconds (a float: what the chain MACs); people read and type ISO 8601.
A time without a zone is UTC. Shown times are UTC with a ``Z``, to the second.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from security.errors import AuditError

__all__ = ["iso_time", "parse_time"]

_MAX_CHARS = 64


def parse_time(text: str) -> float:
    """Unix seconds from ISO 8601 (``2026-12-07``, ``2026-12-07T10:00``, ``...Z``,
    ``...+01:00``) or from a number of Unix seconds; :class:`AuditError` otherwise."""
    value = text.strip()
    if not value or len(value) > _MAX_CHARS:
        raise AuditError("not a time; use ISO 8601 like 2026-12-07T10:00Z", reason="bad_query")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise AuditError("a time must be a finite, positive number", reason="bad_query")
        return seconds
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise AuditError(
            "not a time; use ISO 8601 like 2026-12-07T10:00Z", reason="bad_query"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso_time(seconds: float) -> str:
    """``2026-12-07T10:00:00Z`` for Unix seconds (UTC, to the second)."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z")
