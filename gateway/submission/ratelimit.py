"""Rate limits on the submission hot path, counted inside the request's check round trip.

Limits are written as the ``limits`` library parses them ("120/minute", "10/second").
The hot path cannot afford slowapi's blocking calls (slowapi #3, #130) nor two extra
round trips per limit for the window statistics the ``RateLimit-*`` headers need, so
windows here are fixed and aligned to the clock: the counter key names its window,
``INCR`` returns the count, and the reset time needs no extra call. The counting joins the
script (``gateway.submission.stages``) that also checks revocation and backpressure - one round trip
for all checks.
``/v1/token`` is limited by slowapi (``gateway.routes.token``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import limits

from workers.contract.keys import rate_limit_key

__all__ = [
    "LimitState",
    "Window",
    "evaluate",
    "hit_ttl",
    "limit_headers",
    "parse_window",
]


@dataclass(frozen=True)
class Window:
    """``limit`` hits per ``seconds``-long window."""

    limit: int
    seconds: int
    text: str


@lru_cache(maxsize=1024)
def parse_window(text: str) -> Window:
    """Parse "N/period" with the ``limits`` library (raises ValueError if malformed)."""
    item = limits.parse(text)
    return Window(limit=int(item.amount), seconds=int(item.get_expiry()), text=text)


@dataclass(frozen=True)
class LimitState:
    """Where one limit stands after this request's hit."""

    name: str
    limit: int
    remaining: int
    reset: int  # seconds until the window resets
    allowed: bool


def window_key(name: str, ident: str, window: Window, now: float) -> tuple[str, int]:
    """The counter key for the current window and the seconds until it resets."""
    start = int(now // window.seconds) * window.seconds
    reset = max(1, math.ceil(start + window.seconds - now))
    return rate_limit_key(name, ident, window.seconds, start), reset


def hit_ttl(seconds: int) -> int:
    """Seconds a window's counter lives (set once, ``EXPIRE ... NX``): outlasts its window."""
    return seconds + 1


def evaluate(name: str, count: int, window: Window, reset: int) -> LimitState:
    """The state of a limit given the counter value after this hit."""
    return LimitState(
        name=name,
        limit=window.limit,
        remaining=max(0, window.limit - count),
        reset=reset,
        allowed=count <= window.limit,
    )


def limit_headers(states: Iterable[LimitState]) -> dict[str, str]:
    """``RateLimit-*`` for the most restrictive limit (plus ``Retry-After`` when exceeded)."""
    chosen = list(states)
    if not chosen:
        return {}
    denied = [s for s in chosen if not s.allowed]
    tightest = (
        max(denied, key=lambda s: s.reset) if denied else min(chosen, key=lambda s: s.remaining)
    )
    headers = {
        "RateLimit-Limit": str(tightest.limit),
        "RateLimit-Remaining": str(tightest.remaining),
        "RateLimit-Reset": str(tightest.reset),
    }
    if denied:
        headers["Retry-After"] = str(tightest.reset)
    return headers
