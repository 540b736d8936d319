"""`taskgate audit verify|export|tail|checkpoint`: prove and read the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.settings import OperatorSettings
from security.audit import (
    iter_records,
    make_checkpoint,
    tail,
    verify,
    verify_checkpoint,
)
from security.config import load_settings
from security.errors import AuditError, ConfigError
from security.keystore import KeyRing

__all__ = ["app"]

app = typer.Typer(
    help="Verify, export and follow the tamper-evident audit log.", no_args_is_help=True
)


def _settings() -> tuple[OperatorSettings, KeyRing]:
    try:
        settings = load_settings(OperatorSettings)
        return settings, settings.key_ring("operator")
    except ConfigError as exc:
        typer.echo(f"taskgate audit: refused: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("verify")
def verify_command(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint file from `audit checkpoint`: also detects a cut tail."),
    ] = None,
) -> None:
    """Walk the whole chain; exit 1 and name the first bad record if anything was altered."""
    settings, keys = _settings()
    with settings.redis.client() as client:
        try:
            cp = verify_checkpoint(checkpoint.read_text(), keys.signing) if checkpoint else None
            report = verify(client, keys.audit_keys(), checkpoint=cp)
        except AuditError as exc:
            typer.echo(f"taskgate audit verify: {exc}", err=True)
            raise typer.Exit(1) from None
    if report.ok:
        typer.echo(f"ok: {report.count} records, head seq {report.head_seq}")
        return
    bad = report.first_bad
    where = f"record #{bad.index} (stream id {bad.stream_id})" if bad else "the log"
    typer.echo(f"BROKEN at {where}: {bad.reason if bad else 'unknown'}", err=True)
    raise typer.Exit(1)


@app.command("export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Export every record as JSON lines (no payloads or secrets are ever in the log)."""
    settings, _keys = _settings()
    with settings.redis.client() as client:
        lines = (
            json.dumps(entry.to_dict(), separators=(",", ":")) for entry in iter_records(client)
        )
        if output is None:
            for line in lines:
                typer.echo(line)
        else:
            with output.open("w") as fh:
                for line in lines:
                    fh.write(line + "\n")


@app.command("tail")
def tail_command(
    n: Annotated[int, typer.Option("-n", help="How many of the newest records.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records.")
    ] = False,
) -> None:
    """Print the newest records; with --follow keep printing as they arrive."""
    settings, _keys = _settings()
    with settings.redis.client() as client:
        entries = tail(client, n)
        last = entries[-1].stream_id if entries else "0-0"
        for entry in entries:
            typer.echo(json.dumps(entry.to_dict(), separators=(",", ":")))
        while follow:
            fresh = list(iter_records(client, start=last))
            for entry in fresh:
                if entry.stream_id != last:
                    typer.echo(json.dumps(entry.to_dict(), separators=(",", ":")))
                last = entry.stream_id
            time.sleep(1.0)


@app.command("checkpoint")
def checkpoint_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Sign the current chain head (Ed25519); keep the file outside Redis to detect a cut tail."""
    settings, keys = _settings()
    with settings.redis.client() as client:
        try:
            cp = make_checkpoint(client, keys.signing.current(), keys=keys.audit_keys())
        except AuditError as exc:
            typer.echo(f"taskgate audit checkpoint: {exc}", err=True)
            raise typer.Exit(1) from None
    text = json.dumps(cp, indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n")
