"""Audit entries as tests read them back from Redis."""

from __future__ import annotations

from security.audit import AuditEntry

__all__ = ["entry_stream_id"]


def entry_stream_id(entry: AuditEntry) -> str:
    """The stream id of ``entry``, an entry read from Redis (so it has one)."""
    if entry.stream_id is None:
        raise AssertionError(f"audit entry {entry.record.action} read without a stream id")
    return entry.stream_id
