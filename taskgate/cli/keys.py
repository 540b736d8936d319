"""`taskgate keys init|list|rotate|retire|export`: the key ring in the state folder."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from gateway.settings import OperatorSettings
from gateway.stores.operators import Operator
from security.audit.actions import AuditAction
from security.config import load_settings
from security.errors import ConfigError, KeyRingError
from security.keyexport import bundle_files, export_keys
from security.keyrotation import RESTART_ORDER, audit_target
from security.keys import Purpose, SigningKey, SymmetricKey
from security.keystore import KeyRing, init_keys, list_keys, retire_key, rotate_keys
from taskgate.cli.operator_auth import audit_cli, cli_operator
from taskgate.cli.output import AsJson, echo_json, echo_table

__all__ = ["app"]

app = typer.Typer(
    help="Create, list, rotate, retire and export keys (sealing, vault, audit, token, signing).",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
]
KeysDir = Annotated[
    Path | None,
    typer.Option(
        "--keys-dir", envvar="TASKGATE_KEYS_DIR", help="Key folder (default <state>/keys)."
    ),
]


def _folder(state_dir: Path, keys_dir: Path | None) -> Path:
    return keys_dir if keys_dir is not None else state_dir / "keys"


def _fail(exc: KeyRingError) -> typer.Exit:
    typer.echo(f"taskgate keys: {exc}", err=True)
    return typer.Exit(1)


@app.command("init")
def init_command(state_dir: StateDir = Path(".taskgate"), keys_dir: KeysDir = None) -> None:
    """Create a key for every purpose that has none (existing keys are kept)."""
    folder = _folder(state_dir, keys_dir)
    try:
        ring = init_keys(folder)
    except KeyRingError as exc:
        raise _fail(exc) from None
    typer.echo(f"key ring ready in {folder}: {', '.join(k.kid for k in _current(ring))}")


Offline = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Change the key files without an operator credential or an audit record"
        " (only before Redis exists, e.g. while setting up).",
    ),
]


def _authorise(command: str, offline: bool) -> Callable[[AuditAction, str], None]:
    """Check the operator (admin role) before a change; return what audits it after.

    ``--offline`` skips both, loudly: for a first setup, before Redis is there.
    """
    if offline:
        typer.echo(f"taskgate keys {command}: --offline: no audit record is written", err=True)
        return lambda _action, _target: None
    try:
        settings = load_settings(OperatorSettings)
        ring = settings.key_ring("operator")
    except (ConfigError, KeyRingError) as exc:
        typer.echo(f"taskgate keys {command}: refused: {exc} (or use --offline)", err=True)
        raise typer.Exit(2) from None

    async def check() -> Operator:
        client = settings.redis.async_client()
        try:
            return await cli_operator(client, settings, ring, command=f"keys {command}", admin=True)
        finally:
            await client.aclose()

    who = asyncio.run(check())

    def audit(action: AuditAction, target: str) -> None:
        async def append() -> None:
            client = settings.redis.async_client()
            try:
                await audit_cli(client, ring, who, action, target)
            finally:
                await client.aclose()

        asyncio.run(append())

    return audit


def _current(ring: KeyRing) -> list[SymmetricKey | SigningKey]:
    return [keys.current() for keys in ring.key_sets() if len(keys)]


@app.command("list")
def list_command(
    state_dir: StateDir = Path(".taskgate"), keys_dir: KeysDir = None, as_json: AsJson = False
) -> None:
    """List key ids, purpose, creation time, state and fingerprint (never material)."""
    try:
        infos = list_keys(_folder(state_dir, keys_dir))
    except KeyRingError as exc:
        raise _fail(exc) from None
    rows = [
        {
            "kid": info.kid,
            "purpose": str(info.purpose),
            "created": info.created_at,
            "state": "retired" if info.retired else "live",
            "fingerprint": info.fingerprint,
        }
        for info in infos
    ]
    if as_json:
        echo_json(rows)
        return
    echo_table(
        rows,
        ["kid", "purpose", "created", "state", "fingerprint"],
        empty="no keys; run `taskgate keys init`",
    )


@app.command("rotate")
def rotate_command(
    purpose: Annotated[
        list[Purpose] | None,
        typer.Option("--purpose", "-p", help="Rotate only these purposes (repeatable)."),
    ] = None,
    state_dir: StateDir = Path(".taskgate"),
    keys_dir: KeysDir = None,
    offline: Offline = False,
) -> None:
    """Add a newer key; new messages use it, old ones still open until retired.

    Acts as the operator of TASKGATE_OPERATOR_TOKEN (admin role) and is audited.
    """
    audit = _authorise("rotate", offline)
    try:
        ring = rotate_keys(_folder(state_dir, keys_dir), purpose or None)
    except KeyRingError as exc:
        raise _fail(exc) from None
    audit(AuditAction.KEYS_ROTATE, audit_target(purpose))
    typer.echo("newest keys: " + ", ".join(k.kid for k in _current(ring)))
    typer.echo(RESTART_ORDER)


@app.command("retire")
def retire_command(
    kid: Annotated[str, typer.Argument(help="The key id to retire.")],
    state_dir: StateDir = Path(".taskgate"),
    keys_dir: KeysDir = None,
    offline: Offline = False,
) -> None:
    """Retire a key: anything still sealed or signed with it is refused from now on."""
    audit = _authorise("retire", offline)
    try:
        retire_key(_folder(state_dir, keys_dir), kid)
    except KeyRingError as exc:
        raise _fail(exc) from None
    audit(AuditAction.KEYS_RETIRE, kid[:128])
    typer.echo(f"retired {kid}; restart gateways and workers to enforce it.")


class RoleName(enum.StrEnum):
    """The roles a key bundle can be exported for."""

    GATEWAY = "gateway"
    WORKER = "worker"
    OPERATOR = "operator"


@app.command("export")
def export_command(
    dest: Annotated[Path, typer.Argument(help="Bundle folder to write (replaced if a bundle).")],
    role: Annotated[RoleName, typer.Option("--role", help="Whose keys to export.")],
    state_dir: StateDir = Path(".taskgate"),
    keys_dir: KeysDir = None,
) -> None:
    """Write exactly the keys ROLE loads to DEST (0700, files 0600): a worker's bundle
    holds no signing private key, token, state or other role's audit key."""
    folder = _folder(state_dir, keys_dir)
    try:
        export_keys(folder, dest, role=role.value)
        names = bundle_files(dest, role.value)
    except KeyRingError as exc:
        raise _fail(exc) from None
    typer.echo(f"{role.value} key bundle in {dest}: {len(names) - 1} key files")
    typer.echo(f"point the {role.value} at it with TASKGATE_KEYS_DIR={dest}")
