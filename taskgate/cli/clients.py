"""`taskgate clients add|list|disable|enable|rotate-secret`: the API client registry.

Runs on a gateway host: it reads the gateway's ``TASKGATE_*`` settings and talks to Redis
over mTLS, as the named operator of ``TASKGATE_OPERATOR_TOKEN`` (changes need the admin
role; each command is audited under the operator's name). A scope naming a task the
catalogue does not have is refused. A client secret is printed once (by ``add`` and
``rotate-secret``) and never again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import redis
import typer

from gateway.settings import OperatorSettings
from gateway.stores.client_rules import check_known_tasks
from gateway.stores.clients import Client, ClientError, ClientRegistry
from security.audit.actions import AuditAction
from security.config import load_settings
from security.errors import ConfigError, KeyRingError, StoredStateError
from taskgate.cli.operator_auth import audit_cli, cli_operator
from workers.contract.catalogue import default_catalogue, load_task_modules

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(
    help="Register API clients, list them, disable or re-enable them, rotate their secrets.",
    no_args_is_help=True,
)

ClientId = Annotated[str, typer.Argument(help="The client id, e.g. billing-1a2b3c4d.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

_ONCE = "the client secret is shown only this once; store it now (it cannot be recovered)."


def _run(
    command: str,
    action: AuditAction,
    target: str,
    operation: Callable[[ClientRegistry], Awaitable[T]],
) -> T:
    """Build settings, check the operator (admin role for a change), run ``operation`` on a
    registry over mTLS Redis, audit it under the operator's name, map errors to exits."""
    try:
        settings = load_settings(OperatorSettings)
        ring = settings.key_ring("operator")  # records are MAC'd with its state key
    except (ConfigError, KeyRingError) as exc:
        typer.echo(f"taskgate clients: refused: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> T:
        client = settings.redis.async_client()
        try:
            who = await cli_operator(
                client, settings, ring, command=f"clients {command}", admin=command != "list"
            )
            try:
                result = await operation(ClientRegistry(client, ring.state))
            except (ClientError, StoredStateError) as exc:
                reason = getattr(exc, "reason", "refused")
                await audit_cli(client, ring, who, action, target, outcome="denied", reason=reason)
                raise
            await audit_cli(client, ring, who, action, target)
            return result
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except (ClientError, StoredStateError) as exc:
        typer.echo(f"taskgate clients: {exc}", err=True)
        raise typer.Exit(1) from None
    except (redis.RedisError, OSError) as exc:
        # Only the error type: a driver message is not worth risking connection details in logs.
        typer.echo(
            f"taskgate clients: cannot use Redis ({type(exc).__name__}); check"
            " TASKGATE_REDIS_URL and that Redis is up",
            err=True,
        )
        raise typer.Exit(1) from None


def _known_tasks() -> list[str]:
    """Task names of the catalogue the gateway serves (its TASKGATE_TASK_MODULES)."""
    try:
        settings = load_settings(OperatorSettings)
        load_task_modules(settings.task_modules)
    except (ConfigError, ImportError) as exc:
        typer.echo(f"taskgate clients: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    return [spec.name for spec in default_catalogue]


def _print_secret(client_id: str, secret: str, scopes: list[str] | None) -> None:
    typer.echo(f"client_id:     {client_id}")
    typer.echo(f"client_secret: {secret}")
    if scopes is not None:
        typer.echo(f"scopes:        {' '.join(scopes)}")
    typer.echo(f"WARNING: {_ONCE}", err=True)


@app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="A display name; the id is derived from it.")],
    *,
    scopes: Annotated[
        str | None, typer.Option("--scopes", help='Space-separated scopes, e.g. "tasks:read".')
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="One scope (repeatable).")
    ] = None,
    rate_limit: Annotated[
        str, typer.Option("--rate-limit", help='Request limit, e.g. "120/minute".')
    ] = "120/minute",
    max_queued: Annotated[
        int, typer.Option("--max-queued", help="Most tasks the client may have queued.")
    ] = 100,
    as_json: AsJson = False,
) -> None:
    """Register a client and print its id and secret (the secret is shown only once).

    Scopes: tasks:submit:<task>, tasks:submit:*, tasks:read, audit:read.
    """
    wanted = (scopes or "").split() + list(scope or [])
    known = _known_tasks()

    async def create(reg: ClientRegistry) -> tuple[Client, str]:
        check_known_tasks(wanted, known)
        return await reg.create(name, wanted, rate_limit=rate_limit, max_queued=max_queued)

    client, secret = _run("add", AuditAction.ADMIN_CLIENTS_CREATE, name[:64], create)
    granted = sorted(client.scopes)
    if as_json:
        typer.echo(
            json.dumps({"client_id": client.client_id, "client_secret": secret, "scopes": granted})
        )
    else:
        _print_secret(client.client_id, secret, granted)


@app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """List clients: id, name, state, limits, scopes (never secrets)."""
    clients, refused = _run(
        "list", AuditAction.ADMIN_CLIENTS_LIST, "clients", lambda reg: reg.scan()
    )
    for client_id, exc in refused:  # never shown as if trusted; the operator looks at it
        typer.echo(f"taskgate clients: {client_id}: record refused ({exc.reason})", err=True)
    if as_json:
        typer.echo(json.dumps([c.public() for c in clients], indent=2))
        return
    if not clients:
        typer.echo("no clients registered; add one with `taskgate clients add NAME --scopes ...`")
        return
    typer.echo(f"{'client_id':<42} {'state':<8} {'rate_limit':<14} {'queued':>6}  name / scopes")
    for c in clients:
        state = "disabled" if c.disabled else "enabled"
        row = f"{c.client_id:<42} {state:<8} {c.rate_limit:<14} {c.max_queued:>6}"
        typer.echo(f"{row}  {c.name} / {' '.join(sorted(c.scopes))}")


@app.command("disable")
def disable_command(client_id: ClientId) -> None:
    """Disable a client: token requests and API calls are refused from now on."""
    client = _run(
        "disable",
        AuditAction.ADMIN_CLIENTS_DISABLE,
        client_id[:64],
        lambda reg: reg.disable(client_id),
    )
    typer.echo(f"disabled {client.client_id}")


@app.command("enable")
def enable_command(client_id: ClientId) -> None:
    """Re-enable a disabled client."""
    client = _run(
        "enable",
        AuditAction.ADMIN_CLIENTS_ENABLE,
        client_id[:64],
        lambda reg: reg.enable(client_id),
    )
    typer.echo(f"enabled {client.client_id}")


@app.command("rotate-secret")
def rotate_secret_command(client_id: ClientId, as_json: AsJson = False) -> None:
    """Give a client a new secret; the old one stops working at once."""
    secret = _run(
        "rotate-secret",
        AuditAction.ADMIN_CLIENTS_ROTATE_SECRET,
        client_id[:64],
        lambda reg: reg.rotate_secret(client_id),
    )
    if as_json:
        typer.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
    else:
        _print_secret(client_id, secret, None)
