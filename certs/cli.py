"""`taskgate certs init|show|rotate`: the local CA and the stack's certificates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from certs.material import describe, expiry_warning, init_certs, rotate_leaves

__all__ = ["app"]

app = typer.Typer(
    help="Create, inspect and rotate the local CA and certificates.", no_args_is_help=True
)

StateDir = Annotated[
    Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
]
Names = Annotated[
    list[str] | None,
    typer.Option("--name", help="Extra host name or IP for server certificates (repeatable)."),
]


@app.command("init")
def init_command(
    state_dir: StateDir = Path(".taskgate"),
    name: Names = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing material.")] = False,
) -> None:
    """Create the CA and certificates that are missing (existing ones are kept)."""
    written = init_certs(state_dir / "certs", names=name or [], force=force)
    if written:
        typer.echo(f"wrote {len(written)} files to {state_dir / 'certs'}")
    else:
        typer.echo(
            f"certificates already present in {state_dir / 'certs'} (use --force to replace)"
        )


@app.command("show")
def show_command(
    state_dir: StateDir = Path(".taskgate"),
    as_json: Annotated[bool, typer.Option("--json", help="Print exact JSON.")] = False,
) -> None:
    """Show subject, SANs, expiry, days left and SHA-256 fingerprint of each certificate.

    Warns (on stderr) about each certificate that expires within 30 days;
    exits 1 if one has already expired.
    """
    infos = describe(state_dir / "certs")
    if not infos:
        typer.echo(f"no certificates in {state_dir / 'certs'}; run `taskgate certs init`", err=True)
        raise typer.Exit(1)
    if as_json:
        rows = [
            {
                "file": info.file.name,
                "subject": info.subject,
                "issuer": info.issuer,
                "sans": list(info.sans),
                "not_after": f"{info.not_after:%Y-%m-%dT%H:%M:%SZ}",
                "days_left": info.days_left,
                "sha256": info.sha256,
            }
            for info in infos
        ]
        typer.echo(json.dumps(rows, indent=2))
    for info in [] if as_json else infos:
        typer.echo(f"{info.file.name}")
        typer.echo(f"  subject   {info.subject}")
        typer.echo(f"  issuer    {info.issuer}")
        typer.echo(f"  SANs      {', '.join(info.sans) or '-'}")
        typer.echo(f"  expires   {info.not_after:%Y-%m-%d %H:%M:%SZ} ({info.days_left} days left)")
        typer.echo(f"  sha256    {info.sha256}")
    for line in filter(None, map(expiry_warning, infos)):
        typer.echo(f"warning: {line}", err=True)
    if any(info.expired for info in infos):
        raise typer.Exit(1)


@app.command("rotate")
def rotate_command(state_dir: StateDir = Path(".taskgate"), name: Names = None) -> None:
    """Issue new leaf certificates and keys from the same CA (restart processes after)."""
    try:
        written = rotate_leaves(state_dir / "certs", names=name or [])
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"rotated {len(written) // 2} certificates in {state_dir / 'certs'}")
