"""`taskgate audit search`: the audit log filtered by time, actor, action, outcome, target.

Times go in as ISO 8601 (or Unix seconds) and come out as ISO 8601 UTC. ``--json`` prints
JSON Lines, one record per line, exactly as ``audit export`` does (plus ``when``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gateway.settings import OperatorSettings
from security.audit import AuditEntry, AuditQuery, find_records
from security.audit.times import iso_time, parse_time
from security.config import load_settings
from security.errors import AuditError, ConfigError

__all__ = ["entry_view", "search_command"]

_OUTCOMES = ("allowed", "denied", "ok", "error")


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    """A record as JSON, with its time also in ISO 8601 (``when``)."""
    return {**entry.to_dict(), "when": iso_time(entry.record.time)}


def _line(entry: AuditEntry) -> str:
    r = entry.record
    tail = f"  ({r.reason})" if r.reason else ""
    return f"{iso_time(r.time)}  {r.actor:<20} {r.action:<28} {r.outcome:<7} {r.target}{tail}"


def search_command(
    *,
    since: Annotated[
        str | None, typer.Option(help="From this time on (ISO 8601, e.g. 2026-12-07T10:00Z).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who: an operator or client:<id>.")] = None,
    action: Annotated[str | None, typer.Option(help="What, e.g. admin.clients.create.")] = None,
    outcome: Annotated[str | None, typer.Option(help="allowed, denied, ok or error.")] = None,
    target: Annotated[str | None, typer.Option(help="On what: a task id, client id...")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of text.")] = False,
) -> None:
    """Search the audit log; oldest first; exits 2 on a bad filter."""
    try:
        if outcome is not None and outcome not in _OUTCOMES:
            raise AuditError("outcome must be allowed, denied, ok or error", reason="bad_query")
        query = AuditQuery(
            since=None if since is None else parse_time(since),
            until=None if until is None else parse_time(until),
            actor=actor,
            action=action,
            outcome=outcome,  # type: ignore[arg-type]  # checked above
            target=target,
        )
        settings = load_settings(OperatorSettings)
    except (AuditError, ConfigError) as exc:
        typer.echo(f"taskgate audit search: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    found = 0
    with settings.redis.client() as client:
        after: str | None = None
        while found < limit:
            page = find_records(client, query, after=after, limit=limit - found)
            for entry in page.entries:
                typer.echo(json.dumps(entry_view(entry)) if as_json else _line(entry))
            found += len(page.entries)
            if page.next_after is None:
                break
            after = page.next_after
    if not found and not as_json:
        typer.echo("no matching records", err=True)
