"""Rate-limit windows: parsing, clock-aligned keys, counter lifetimes and the headers."""

from __future__ import annotations

import pytest

from gateway.submission.ratelimit import (
    LimitState,
    Window,
    evaluate,
    hit_ttl,
    limit_headers,
    parse_window,
    window_key,
)


def test_parse_window_reads_amount_and_period_with_the_limits_grammar() -> None:
    """Text "120/minute" is 120 hits per 60 s; "10/2 seconds" is 10 per 2 s."""
    assert parse_window("120/minute") == Window(limit=120, seconds=60, text="120/minute")
    assert parse_window("10/2 seconds") == Window(limit=10, seconds=2, text="10/2 seconds")


@pytest.mark.parametrize("text", ["", "lots", "10 per fortnight", "/minute"])
def test_parse_window_refuses_malformed_limits(text: str) -> None:
    """A limit the ``limits`` library cannot parse raises ValueError, never a default."""
    with pytest.raises(ValueError, match=r"parse|granularity"):
        parse_window(text)


def test_window_key_is_aligned_to_the_clock_and_names_its_window() -> None:
    """Two instants in the same minute share a key; the next minute gets a new one."""
    window = parse_window("5/minute")
    first, reset_first = window_key("client", "app-0123abcd", window, 120.0)
    same, reset_same = window_key("client", "app-0123abcd", window, 179.5)
    after, _ = window_key("client", "app-0123abcd", window, 180.0)
    assert first == same
    assert after != first
    assert first.endswith(":120")
    assert after.endswith(":180")
    assert (reset_first, reset_same) == (60, 1)


def test_window_key_separates_limit_names_and_identities() -> None:
    """Per-client and per-task counters never share a key."""
    window = parse_window("5/minute")
    keys = {
        window_key(name, ident, window, 0.0)[0]
        for name in ("client", "task")
        for ident in ("app-0123abcd", "other-89abcdef")
    }
    assert len(keys) == 4


def test_reset_is_at_least_one_second() -> None:
    """A hit in the window's last fraction of a second still reports a 1 s reset."""
    window = parse_window("5/second")
    _, reset = window_key("client", "app-0123abcd", window, 10.999)
    assert reset == 1


def test_counter_outlives_its_window() -> None:
    """The counter's TTL is longer than the window, so a count never vanishes mid-window."""
    assert hit_ttl(60) > 60
    assert hit_ttl(1) > 1


@pytest.mark.parametrize(
    ("count", "remaining", "allowed"),
    [(1, 2, True), (3, 0, True), (4, 0, False), (10, 0, False)],
)
def test_evaluate_allows_up_to_the_limit(count: int, remaining: int, allowed: bool) -> None:
    """The limit-th hit is allowed; the next is refused and remaining never goes negative."""
    state = evaluate("client", count, parse_window("3/minute"), reset=30)
    assert (state.remaining, state.allowed, state.limit, state.reset) == (
        remaining,
        allowed,
        3,
        30,
    )


def test_headers_empty_without_limits() -> None:
    """No configured limit, no RateLimit headers."""
    assert limit_headers([]) == {}


def test_headers_show_the_tightest_allowed_limit_without_retry_after() -> None:
    """When every limit allows the hit, the one with least remaining is reported."""
    loose = LimitState("client", limit=100, remaining=90, reset=50, allowed=True)
    tight = LimitState("task", limit=10, remaining=2, reset=20, allowed=True)
    assert limit_headers([loose, tight]) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "20",
    }


def test_headers_on_refusal_report_the_longest_wait_with_retry_after() -> None:
    """Among refused limits the longest reset wins, so a retry at Retry-After can pass."""
    soon = LimitState("client", limit=5, remaining=0, reset=3, allowed=False)
    late = LimitState("task", limit=50, remaining=0, reset=40, allowed=False)
    fine = LimitState("other", limit=9, remaining=8, reset=1, allowed=True)
    headers = limit_headers([soon, fine, late])
    assert headers["Retry-After"] == "40"
    assert headers["RateLimit-Limit"] == "50"
    assert headers["RateLimit-Reset"] == "40"
