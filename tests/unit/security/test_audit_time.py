"""ISO 8601 in and out of the audit views."""

from __future__ import annotations

import pytest

from security.audit.times import iso_time, parse_time
from security.errors import AuditError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-12-07T10:00:00Z", 1796637600.0),
        ("2026-12-07T10:00Z", 1796637600.0),
        ("2026-12-07T11:00:00+01:00", 1796637600.0),
        ("2026-12-07T10:00:00", 1796637600.0),  # no zone: UTC
        ("2026-12-07", 1796601600.0),
        ("1796637600", 1796637600.0),
        (" 1796637600.5 ", 1796637600.5),
    ],
)
def test_parse_time_reads_iso_8601_and_unix_seconds(text: str, seconds: float) -> None:
    """ISO 8601 with or without zone, a date alone, or Unix seconds."""
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "nan", "inf", "-5", "2026-13-01", "x" * 65])
def test_parse_time_refuses_what_is_not_a_time(text: str) -> None:
    """Words, NaN, infinity, negatives, impossible dates and long input are refused."""
    with pytest.raises(AuditError, match="time"):
        parse_time(text)


def test_iso_time_is_utc_with_z_to_the_second() -> None:
    """Shown times are UTC, to the second, ending in Z."""
    assert iso_time(1796637600.7) == "2026-12-07T10:00:00Z"
