"""`taskgate audit verify|export|tail|checkpoint`: prove and read the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.settings import OperatorSettings
from security.audit import iter_records, make_checkpoint, tail, verify_checkpoint
from security.audit.anchor import Anchor, read_anchors
from security.audit.archive import parse_retention
from security.audit.retention import archive_oldest
from security.audit.span import verify_span
from security.config import load_settings
from security.errors import AuditError, ConfigError
from security.keystore import KeyRing
from taskgate.cli.audit_search import search_command

__all__ = ["app"]

app = typer.Typer(
    help="Search, verify, export and follow the tamper-evident audit log.", no_args_is_help=True
)
app.command("search")(search_command)


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
    archive: Annotated[
        Path | None,
        typer.Option(help="Also verify the archive segments in this folder, oldest first."),
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(help="Anchor file (default: TASKGATE_AUDIT_ANCHOR_FILE)."),
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Resume at the newest anchor still live (verified then).")
    ] = False,
) -> None:
    """Verify archive + live log against the newest checkpoint; exit 1 naming the first
    bad record, or the missing range of a wiped, cut or rewound log."""
    settings, keys = _settings()
    with settings.redis.client() as client:
        try:
            pool = read_anchors(anchors or settings.anchor_file, keys.signing)
            if checkpoint is not None:
                cp = verify_checkpoint(checkpoint.read_text(), keys.signing)
                pool.append(Anchor(cp, None))
            report = verify_span(
                client,
                keys.audit_keys(),
                keys.signing,
                archive_dir=archive,
                anchors=pool,
                incremental=incremental,
            )
        except AuditError as exc:
            typer.echo(f"taskgate audit verify: {exc}", err=True)
            raise typer.Exit(1) from None
    if report.ok:
        typer.echo(report.describe())
        return
    typer.echo(report.describe(), err=True)
    raise typer.Exit(1)


@app.command("archive")
def archive_command(
    retention: Annotated[
        str | None,
        typer.Option(help="Records to keep, or an age (default TASKGATE_AUDIT_RETENTION)."),
    ] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Archive folder (default TASKGATE_AUDIT_ARCHIVE_DIR).")
    ] = None,
) -> None:
    """Archive the records past retention (JSON lines, closed by a signed checkpoint), then
    trim them from Redis. Operator role: refuses a log that does not verify."""
    settings, keys = _settings()
    try:
        keep = parse_retention(retention or settings.audit_retention)
    except ConfigError as exc:
        typer.echo(f"taskgate audit archive: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    folder = archive_dir or settings.archive_dir
    with settings.redis.client() as client:
        try:
            pool = read_anchors(settings.anchor_file, keys.signing)
            done = archive_oldest(client, keys, folder, keep, anchors=pool)
        except AuditError as exc:
            typer.echo(f"taskgate audit archive: {exc}", err=True)
            raise typer.Exit(1) from None
    for seg in done:
        typer.echo(f"archived seq {seg.first_seq}-{seg.last_seq} to {seg.path}")
    if not done:
        typer.echo("nothing past retention")


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
