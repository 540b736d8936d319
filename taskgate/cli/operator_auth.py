"""The CLI as a named operator: who is acting, may they, and the audit record of what they did.

The credential comes from ``TASKGATE_OPERATOR_TOKEN`` or ``TASKGATE_OPERATOR_TOKEN_FILE``
(0600). It is checked against the operator records in Redis (or the bootstrap admin token's
hash) exactly as the gateway checks it; a change needs the admin role. Every command then
appends one audit record under the operator's name, with request id ``cli``.
"""

from __future__ import annotations

import redis.asyncio
import typer

from gateway.settings import OperatorSettings
from gateway.stores.operators import Operator, OperatorRegistry
from security.audit import AsyncAuditWriter, AuditRecord, Outcome
from security.audit.actions import AuditAction
from security.errors import ConfigError, StoredStateError
from security.keystore import KeyRing

__all__ = ["CLI_REQUEST_ID", "NEEDS", "audit_cli", "cli_operator"]

CLI_REQUEST_ID = "cli"  # the request id of every CLI command's audit record

NEEDS = (
    "set TASKGATE_OPERATOR_TOKEN (or TASKGATE_OPERATOR_TOKEN_FILE) to an operator credential:"
    " the admin token `taskgate up` printed, or one from `taskgate operators add`"
)


async def cli_operator(
    client: redis.asyncio.Redis,
    settings: OperatorSettings,
    keys: KeyRing,
    *,
    command: str,
    admin: bool,
) -> Operator:
    """The operator the credential names; exits 2 if missing, wrong or (for a change,
    ``admin=True``) an auditor - the refusal of a known auditor is audited."""
    try:
        credential = settings.load_operator_token()
    except ConfigError as exc:
        typer.echo(f"taskgate {command}: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    if not credential:
        typer.echo(f"taskgate {command}: refused: {NEEDS}", err=True)
        raise typer.Exit(2)
    registry = OperatorRegistry(client, keys.state, admin_hash=settings.load_admin_token_hash())
    try:
        operator = await registry.authenticate(credential)
    except StoredStateError as exc:
        typer.echo(f"taskgate {command}: refused: operator record ({exc.reason})", err=True)
        raise typer.Exit(2) from None
    if operator is None:
        typer.echo(f"taskgate {command}: refused: the operator credential is not valid", err=True)
        raise typer.Exit(2)
    if admin and not operator.is_admin:
        await audit_cli(
            client,
            keys,
            operator,
            AuditAction.OPERATOR_FORBIDDEN,
            command[:128],
            outcome="denied",
            reason=f"role {operator.role} is read-only",
        )
        typer.echo(f"taskgate {command}: refused: this needs the admin role", err=True)
        raise typer.Exit(2)
    return operator


async def audit_cli(
    client: redis.asyncio.Redis,
    keys: KeyRing,
    operator: Operator,
    action: AuditAction,
    target: str,
    *,
    outcome: Outcome = "ok",
    reason: str = "",
) -> None:
    """Append one record of what ``operator`` did through the CLI."""
    record = AuditRecord.make(
        actor=operator.actor,
        action=action,
        outcome=outcome,
        target=target,
        reason=reason,
        request_id=CLI_REQUEST_ID,
    )
    await AsyncAuditWriter(client, keys.audit).append(record)
