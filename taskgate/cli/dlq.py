"""`taskgate dlq list|inspect|requeue|purge`: the dead-letter store, audited under the
name of the operator ``TASKGATE_OPERATOR_TOKEN`` names (requeue and purge need admin)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import redis
import typer

from gateway.settings import OperatorSettings
from gateway.stores import deadletters
from gateway.stores.operators import Operator
from security.audit import AsyncAuditWriter, AuditRecord
from security.audit.actions import AuditAction
from security.config import load_settings
from security.errors import AuditError, ConfigError
from security.keystore import KeyRing
from taskgate.cli.operator_auth import CLI_REQUEST_ID, audit_cli, cli_operator
from taskgate.cli.output import AsJson, echo_json, echo_record, echo_table
from workers.contract import metrics as m
from workers.contract.enqueue import committer
from workers.contract.keys import METRICS_OPERATOR

__all__ = ["app"]

app = typer.Typer(
    help="List, inspect, requeue and purge dead-lettered tasks.", no_args_is_help=True
)


_READS = {AuditAction.ADMIN_DLQ_LIST: True, AuditAction.ADMIN_DLQ_INSPECT: True}


# An operation: the client, the keys, the settings and the operator acting.
_Op = Callable[[Any, KeyRing, OperatorSettings, Operator], Awaitable[Any]]


def _run(action: AuditAction, target: str, op: _Op, *, audits_itself: bool = False) -> Any:
    """Run ``op`` as the CLI's operator and audit it; ``audits_itself``: ``op`` writes its
    own record of success (a requeue, in the same atomic call), so only a refusal is
    audited here."""
    try:
        settings = load_settings(OperatorSettings)
        keys = settings.key_ring("operator")
    except ConfigError as exc:
        typer.echo(f"taskgate dlq: refused: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go() -> Any:
        client = settings.redis.async_client()
        try:
            who = await cli_operator(
                client, settings, keys, command=f"dlq {action}", admin=not _READS.get(action)
            )
            try:
                result = await op(client, keys, settings, who)
            except deadletters.DeadLetterError as exc:
                await audit_cli(client, keys, who, action, target, outcome=exc.outcome)
                return exc
            if not audits_itself:
                await audit_cli(client, keys, who, action, target)
            return result
        finally:
            await client.aclose()

    try:
        result = asyncio.run(go())
    except AuditError as exc:
        done = "nothing was requeued" if audits_itself else "it ran unaudited"
        typer.echo(
            f"taskgate dlq: the audit log refused the record ({exc.reason}): {done}", err=True
        )
        raise typer.Exit(1) from None
    if isinstance(result, deadletters.DeadLetterError):
        typer.echo(f"taskgate dlq: {result.detail}", err=True)
        raise typer.Exit(1)
    return result


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: AsJson = False,
) -> None:
    """List dead letters: id, task, owner, attempts, reason (never the payload)."""
    items, _ = _run(
        AuditAction.ADMIN_DLQ_LIST,
        "dead-letters",
        lambda c, _k, _s, _o: deadletters.list_dead(c, limit=limit),
    )
    rows = [dead.public() for dead in items]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        row["dead_at"] = _when(row.get("dead_at"))
    echo_table(
        rows,
        ["id", "task", "owner", "attempts", "replays", "dead_at", "reason"],
        empty="no dead letters",
    )


@app.command("inspect")
def inspect_command(task_id: str, as_json: AsJson = False) -> None:
    """Show one dead letter's metadata."""
    dead = _run(
        AuditAction.ADMIN_DLQ_INSPECT,
        task_id,
        lambda c, _k, _s, _o: deadletters.inspect(c, task_id),
    )
    if as_json:
        echo_json(dead.public())
    else:
        echo_record({**dead.public(), "dead_at": _when(dead.public().get("dead_at"))})


@app.command("requeue")
def requeue_command(task_id: str) -> None:
    """Run a dead-lettered task again with a fresh attempt budget (replays are capped)."""

    async def requeue(client: Any, keys: KeyRing, settings: OperatorSettings, who: Operator) -> Any:
        record = AuditRecord.make(
            actor=who.actor,
            action=AuditAction.ADMIN_DLQ_REQUEUE,
            outcome="ok",
            target=task_id,
            request_id=CLI_REQUEST_ID,
        )
        dead = await deadletters.requeue(
            client,
            keys,
            task_id,
            ttl=settings.envelope_ttl,
            record=record,
            commit=committer(AsyncAuditWriter(client, keys.audit)),
        )
        # counted for /metrics (taskgate_dead_letter_replays_total); the requeue stands anyway
        with contextlib.suppress(redis.RedisError):
            field = m.SEP.join((m.REPLAYS.name, m.label(dead.name)))
            await client.hincrby(METRICS_OPERATOR, field)
        return dead

    dead = _run(AuditAction.ADMIN_DLQ_REQUEUE, task_id, requeue, audits_itself=True)
    typer.echo(f"requeued {task_id} (replay {dead.replays})")


@app.command("purge")
def purge_command(task_id: str) -> None:
    """Delete a dead letter and its stored secrets."""
    _run(AuditAction.ADMIN_DLQ_PURGE, task_id, lambda c, _k, _s, _o: deadletters.purge(c, task_id))
    typer.echo(f"purged {task_id}")


def _when(stamp: object) -> str:
    """A Unix time as local date and time (``-`` if absent)."""
    if not isinstance(stamp, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
