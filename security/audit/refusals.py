"""Aggregated refusals: a flood of refused requests costs a bounded number of audit records.

Accepted work, admin actions and every authenticated decision are one chained record
each. Refusals of *unauthenticated or rate-limited* traffic (a bad token, a 429) are
instead counted in Redis per window (``window`` seconds) and per *group*: the refused
action, the source (``ip:<address>``, plus the claimed client id when it is a
well-formed one) and the target. A group's first refusal in a window is chained at once
(the start of a flood is in the log within the round trip that refused it); when the
window closes, one summary record carries the group's count, its first and last time and
its reasons, so the counts are never lost and the log stays verifiable.

Bounds: at most ``max_groups`` groups per window (later ones fold into one ``overflow``
group) and ``max_reasons`` reasons per group (later ones count as ``other``), so a window
costs at most ``2 * (max_groups + 1)`` records and a bounded Redis hash, whatever the
flood. Redis keys (written by the gateway role only), for stream ``S``:

* ``S:refusals:<window>``: hash of counters (``<group>|n`` count, ``|f``/``|l`` first
  and last time, ``|d`` the group, ``|r|<reason>`` per-reason counts), expires after a day;
* ``S:refusals:open``: sorted set of windows with counters;
* ``S:refusals:<window>:closing`` / ``:lock``: a window being summarised, and who does it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import redis
import redis.asyncio

from security.audit.actions import AuditAction
from security.audit.chain import AuditRecord, neutralise
from security.audit.store import DEFAULT_STREAM, text
from security.errors import AuditError, ConfigError
from security.lua import lua_script

__all__ = [
    "OVERFLOW",
    "OVERFLOW_ACTION",
    "GroupSummary",
    "RefusalCounter",
    "RefusalGroup",
    "parse_counters",
    "parse_window",
    "summary_records",
]

OVERFLOW: Final = "overflow"
OVERFLOW_ACTION: Final = AuditAction.REFUSAL_OVERFLOW  # the overflow group's first is not chained
_REASON_CAP: Final = 64
_KEY_TTL: Final = 86_400  # counters a gateway never summarised do not stay forever

# What it does, its KEYS and ARGV: the comment at the top of refusal_count.lua.
_COUNT_LUA: Final = lua_script("security.audit", "refusal_count.lua")

# What it does, its KEYS and ARGV: the comment at the top of refusal_claim.lua.
_CLAIM_LUA: Final = lua_script("security.audit", "refusal_claim.lua")


def parse_window(value: str | int | float) -> int:
    """A window length in whole seconds (1 s to 1 day); :class:`ConfigError` otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 1 <= seconds <= 86_400 and seconds == int(seconds)):
        raise ConfigError(
            "TASKGATE_AUDIT_REFUSAL_WINDOW", "must be whole seconds", "use 1 to 86400"
        )
    return int(seconds)


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    """What refusals are counted together: the refused action, the source, the target."""

    action: str
    actor: str
    target: str

    def encode(self) -> tuple[str, str]:
        """The group's id (a short digest: safe as a hash field) and its JSON description."""
        desc = json.dumps([self.action, self.actor, self.target], separators=(",", ":"))
        return hashlib.sha256(desc.encode()).hexdigest()[:16], desc


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One group's counters for one window, as read back from Redis."""

    group: RefusalGroup
    count: int
    first: float
    last: float
    reasons: dict[str, int]


def _number(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    return value if math.isfinite(value) and value >= 0 else 0.0


def parse_counters(fields: Mapping[str, str]) -> list[GroupSummary]:
    """The groups in a window's counters, largest first. A group whose description does
    not parse (the hash was edited by hand) is kept as ``unknown`` with its count."""
    groups: dict[str, dict[str, str]] = {}
    for name, value in fields.items():
        gid, sep, rest = name.partition("|")
        if sep:
            groups.setdefault(gid, {})[rest] = value
    out: list[GroupSummary] = []
    for parts in groups.values():
        try:
            action, actor, target = json.loads(parts.get("d", ""))
            group = RefusalGroup(str(action), str(actor), str(target))
        except (ValueError, TypeError):
            group = RefusalGroup(AuditAction.REFUSAL_UNKNOWN, "unknown", "")
        reasons = {
            k[2:]: int(_number(v)) for k, v in parts.items() if k.startswith("r|") and _number(v)
        }
        count = int(_number(parts.get("n")))
        out.append(
            GroupSummary(group, count, _number(parts.get("f")), _number(parts.get("l")), reasons)
        )
    return sorted(out, key=lambda s: (-s.count, s.group.actor))


def summary_records(
    window: int, length: int, summaries: list[GroupSummary], *, now: float
) -> list[AuditRecord]:
    """One ``denied`` record per group that was refused more than once in the window (a
    lone refusal is its own first record already; the overflow group always gets one).
    The reason reads
    ``summary count=<n> first=<t> last=<t> window=<start>+<length> reasons=<r>:<n>,...``."""
    records = []
    for s in summaries:
        if s.count <= 1 and s.group.action != OVERFLOW_ACTION:  # overflow: nothing chained yet
            continue
        reasons = ",".join(
            f"{r}:{n}" for r, n in sorted(s.reasons.items(), key=lambda item: (-item[1], item[0]))
        )
        reason = (
            f"summary count={s.count} first={s.first:.3f} last={s.last:.3f}"
            f" window={window * length}+{length} reasons={reasons}"
        )
        records.append(
            AuditRecord.make(
                actor=s.group.actor or "unknown",
                action=s.group.action or AuditAction.REFUSAL_UNKNOWN,
                outcome="denied",
                target=s.group.target,
                reason=reason,
                now=now,
            )
        )
    return records


class RefusalCounter:
    """Count refusals per window and group in Redis; claim closed windows to summarise.

    ``window`` is the window length in seconds. Raises :class:`AuditError`
    (``unavailable``) when Redis cannot be reached: the caller fails closed as for any
    audit append.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        window: int = 60,
        max_groups: int = 100,
        max_reasons: int = 8,
    ) -> None:
        if max_groups < 1 or max_reasons < 1:
            raise ConfigError("audit refusal limits", "must be at least 1", "pass positive counts")
        self.window = parse_window(window)
        self.prefix = f"{stream}:refusals"
        self.open_key = f"{self.prefix}:open"
        self._max_groups, self._max_reasons = max_groups, max_reasons
        self._client = client
        self._count = client.register_script(_COUNT_LUA)
        self._claim = client.register_script(_CLAIM_LUA)

    def window_of(self, when: float) -> int:
        """The index of the window ``when`` falls in."""
        return int(when // self.window)

    def keys(self, window: int) -> tuple[str, str, str]:
        """The window's counter hash, its closing hash and its lock key."""
        base = f"{self.prefix}:{window}"
        return base, f"{base}:closing", f"{base}:lock"

    async def count(self, group: RefusalGroup, reason: str, *, now: float) -> int:
        """Count one refusal; the group's count in this window (1: chain this refusal now;
        0: it fell into the overflow group, whose first refusal is not chained)."""
        window = self.window_of(now)
        gid, desc = group.encode()
        cause = neutralise(reason.split(" at ", 1)[0], _REASON_CAP) or "-"
        args: list[str | int] = [window, gid, desc, cause, repr(now)]
        args += [self._max_groups, self._max_reasons, _KEY_TTL]
        try:
            reply = await self._count(keys=[self.keys(window)[0], self.open_key], args=args)
        except redis.RedisError as exc:
            raise AuditError(
                f"refusal counter unavailable ({type(exc).__name__})", reason="unavailable"
            ) from exc
        return int(reply)

    async def closed_windows(self, *, now: float, grace: float) -> list[int]:
        """Windows with counters that ended at least ``grace`` seconds before ``now``."""
        last_closed = self.window_of(now - grace) - 1
        raw = await self._client.zrangebyscore(self.open_key, "-inf", last_closed)
        names = [text(w) for w in raw if isinstance(w, bytes | str)]
        return sorted({int(w) for w in names if w.lstrip("-").isdigit()})

    async def delete(self, *keys: str) -> None:
        """Drop a summarised window's keys (when it needed no summary record)."""
        await self._client.delete(*keys)

    async def claim(
        self, window: int, token: str, *, lock_seconds: float = 30.0
    ) -> list[GroupSummary] | None:
        """Take ``window``'s counters to summarise (None: another process has them)."""
        counters, closing, lock = self.keys(window)
        reply = await self._claim(
            keys=[self.open_key, counters, closing, lock],
            args=[window, token, int(lock_seconds * 1000)],
        )
        if reply is None or reply is False:
            return None
        flat = [text(v) for v in reply]
        return parse_counters(dict(zip(flat[0::2], flat[1::2], strict=True)))
