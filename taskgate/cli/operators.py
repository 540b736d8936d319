"""`taskgate operators add|list|revoke`: named operators (admin or auditor), audited.

Acts as the operator named by ``TASKGATE_OPERATOR_TOKEN`` / ``_FILE`` (the admin token
`taskgate up` printed is the operator ``admin``). A new credential is printed once.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import redis
import typer

from gateway.settings import OperatorSettings
from gateway.stores.operators import Operator, OperatorError, OperatorRegistry
from security.audit.actions import AuditAction
from security.config import load_settings
from security.errors import ConfigError, KeyRingError, StoredStateError
from taskgate.cli.operator_auth import audit_cli, cli_operator

__all__ = ["app"]

app = typer.Typer(
    help="Named operators: add (credential shown once), list, revoke.", no_args_is_help=True
)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


class RoleChoice(enum.StrEnum):
    ADMIN = "admin"
    AUDITOR = "auditor"


_Op = Callable[[OperatorRegistry], Awaitable[Any]]


def _run(command: str, action: AuditAction, target: str, op: _Op, *, admin: bool) -> Any:
    try:
        settings = load_settings(OperatorSettings)
        keys = settings.key_ring("operator")
    except (ConfigError, KeyRingError) as exc:
        typer.echo(f"taskgate operators: refused: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> Any:
        client = settings.redis.async_client()
        try:
            who = await cli_operator(
                client, settings, keys, command=f"operators {command}", admin=admin
            )
            registry = OperatorRegistry(
                client, keys.state, admin_hash=settings.load_admin_token_hash()
            )
            try:
                result = await op(registry)
            except OperatorError as exc:
                await audit_cli(
                    client, keys, who, action, target, outcome="denied", reason=exc.reason
                )
                raise
            await audit_cli(client, keys, who, action, target)
            return result
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except (OperatorError, StoredStateError) as exc:
        typer.echo(f"taskgate operators: {exc}", err=True)
        raise typer.Exit(1) from None
    except (redis.RedisError, OSError) as exc:
        typer.echo(f"taskgate operators: cannot use Redis ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None


@app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="Lowercase name, e.g. alice (the audit actor).")],
    role: Annotated[RoleChoice, typer.Option("--role", help="admin or auditor.")],
    as_json: AsJson = False,
) -> None:
    """Add an operator and print its credential (shown only this once)."""
    operator, credential = _run(
        "add",
        AuditAction.OPERATORS_ADD,
        name[:64],
        lambda reg: reg.add(name, role.value),
        admin=True,
    )
    if as_json:
        typer.echo(json.dumps({**operator.public(), "credential": credential}))
    else:
        typer.echo(f"operator:   {operator.name} ({operator.role})")
        typer.echo(f"credential: {credential}")
    typer.echo("WARNING: the credential is shown only this once; store it now.", err=True)


@app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """List operators: name, role, created, revoked (never credentials)."""
    found: tuple[list[Operator], list[tuple[str, StoredStateError]]] = _run(
        "list", AuditAction.OPERATORS_LIST, "operators", lambda reg: reg.scan(), admin=False
    )
    operators, refused = found
    for name, exc in refused:
        typer.echo(f"taskgate operators: {name}: record refused ({exc.reason})", err=True)
    rows = [o.public() for o in operators]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo("admin (the bootstrap admin token, if configured)  admin")
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        typer.echo(f"{row['name']:<32} {row['role']:<8} {state:<8} {row['created_at']}")


@app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The operator to revoke.")],
) -> None:
    """Revoke an operator: its credential stops working at once."""
    _run(
        "revoke", AuditAction.OPERATORS_REVOKE, name[:64], lambda reg: reg.revoke(name), admin=True
    )
    typer.echo(f"revoked {name}")
