"""The registry's rules: client ids, names, scopes and limits (no Redis, no framework).

Client ids are ``<slug of the name>-<8 hex digits>``. Every id is checked against that
pattern before it is put in a key, so an id taken from a request (``../x``, ``a:b``) never
reaches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import limits

from security.errors import TaskgateError
from workers.contract.keys import CLIENT_PREFIX, CLIENTS_SET

__all__ = [
    "CLIENTS_SET",
    "SUBMIT_ANY",
    "SUBMIT_PREFIX",
    "ClientError",
    "check_known_tasks",
    "check_max_queued",
    "check_name",
    "check_rate_limit",
    "client_key",
    "is_valid_client_id",
    "scope_allows",
    "slug",
    "validate_scopes",
]

_KEY_PREFIX = CLIENT_PREFIX
_SLUG_MAX = 32
_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}-[0-9a-f]{8}", re.ASCII)
# Names show up in logs, audit records and the CLI: plain printable ASCII only.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}", re.ASCII)
_TASK_NAME = r"[a-z0-9._-]{1,100}"
_SCOPE_RE = re.compile(rf"tasks:submit:(?:\*|{_TASK_NAME})|tasks:read|audit:read", re.ASCII)
SUBMIT_PREFIX = "tasks:submit:"
SUBMIT_ANY = "tasks:submit:*"
_MAX_SCOPES = 256
_MAX_LIMIT_CHARS = 64
_MAX_LIMIT_AMOUNT = 1_000_000
_MAX_QUEUED = 100_000


class ClientError(TaskgateError):
    """A client operation was refused.

    ``reason`` is one of ``unknown_client``, ``bad_scope``, ``bad_name``, ``bad_limit``,
    ``corrupt_record`` (a stored hash that does not parse) or ``conflict`` (too many concurrent
    writers). Messages never contain a secret. A record that fails its state MAC raises
    :class:`~security.errors.StoredStateError` instead.
    """

    default_reason = "client"


def is_valid_client_id(client_id: object) -> bool:
    """True if ``client_id`` has the shape ``<slug>-<8 hex>`` (safe to put in a Redis key)."""
    return isinstance(client_id, str) and _ID_RE.fullmatch(client_id) is not None


def client_key(client_id: str) -> str:
    """The Redis key of ``client_id``'s hash; refuses an id that is not well formed."""
    if not is_valid_client_id(client_id):
        raise ClientError("client id is not well formed", reason="unknown_client")
    return _KEY_PREFIX + client_id


def validate_scopes(scopes: Iterable[str] | str) -> frozenset[str]:
    """Check every scope against the grammar; a string is split on whitespace.

    Allowed: ``tasks:submit:<task>`` (task ``[a-z0-9._-]{1,100}``), ``tasks:submit:*``,
    ``tasks:read``, ``audit:read``. At least one scope is required.
    """
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not items:
        raise ClientError("at least one scope is required", reason="bad_scope")
    if len(items) > _MAX_SCOPES:
        raise ClientError(f"more than {_MAX_SCOPES} scopes", reason="bad_scope")
    for scope in items:
        if not isinstance(scope, str) or _SCOPE_RE.fullmatch(scope) is None:
            # The value is not echoed: it is caller input of unknown size and content.
            raise ClientError(
                "scope not allowed; use tasks:submit:<task>, tasks:submit:*, tasks:read"
                " or audit:read",
                reason="bad_scope",
            )
    return frozenset(items)


def check_known_tasks(scopes: Iterable[str] | str, known: Iterable[str]) -> None:
    """Refuse a ``tasks:submit:<task>`` scope naming a task the catalogue does not have
    (a typo such as ``report.generat`` would otherwise grant nothing, silently)."""
    names = set(known)
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    for scope in items:
        if scope.startswith(SUBMIT_PREFIX) and scope != SUBMIT_ANY:
            task = scope[len(SUBMIT_PREFIX) :]
            if task not in names:
                shown = task if re.fullmatch(_TASK_NAME, task) else "(malformed)"
                raise ClientError(
                    f"scope names an unknown task {shown}; known: {', '.join(sorted(names))}",
                    reason="unknown_task",
                )


def scope_allows(granted: Iterable[str], needed: str) -> bool:
    """True if ``granted`` covers ``needed``; ``tasks:submit:*`` covers every task submission.

    A ``needed`` scope outside the grammar is never allowed.
    """
    if not isinstance(needed, str) or _SCOPE_RE.fullmatch(needed) is None:
        return False
    held = {scope for scope in granted if isinstance(scope, str)}
    if needed in held:
        return True
    return needed.startswith(SUBMIT_PREFIX) and SUBMIT_ANY in held


def slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:_SLUG_MAX].rstrip("-")


def check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ClientError(
            "name must be 1-64 characters of A-Z a-z 0-9 space . _ -, starting with a letter"
            " or digit",
            reason="bad_name",
        )
    return name


def check_rate_limit(rate_limit: object) -> str:
    """Parse with ``limits``; exactly one positive limit, returned in canonical form."""
    refused = ClientError(
        'rate limit must be one limit such as "120/minute" or "10/2 seconds"', reason="bad_limit"
    )
    if not isinstance(rate_limit, str) or len(rate_limit) > _MAX_LIMIT_CHARS:
        raise refused
    try:
        items = limits.parse_many(rate_limit)
    except ValueError:
        raise refused from None
    if len(items) != 1 or not 1 <= items[0].amount <= _MAX_LIMIT_AMOUNT:
        raise refused
    item = items[0]
    unit = item.GRANULARITY.name
    per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount}/{per}"


def check_max_queued(max_queued: object) -> int:
    if (
        isinstance(max_queued, bool)
        or not isinstance(max_queued, int)
        or not 1 <= max_queued <= _MAX_QUEUED
    ):
        raise ClientError(f"max_queued must be an integer 1..{_MAX_QUEUED}", reason="bad_limit")
    return max_queued
