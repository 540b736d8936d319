"""`taskgate redis acl`: print the Redis ACL lines of taskgate's roles.

For an operator who runs their own Redis: load the output with ``aclfile`` or ``ACL LOAD``
(see ``docs/redis-acls.md``). Password hashes come from the roles' password files when
they exist, otherwise a placeholder the operator replaces (Redis refuses to load it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from security.errors import ConfigError
from security.tls import check_secret_file
from taskgate.devstack.redis_users import USERS_DIR, password_path, password_sha256
from workers.contract.acl import render_acl
from workers.contract.keys import ROLES, Role

__all__ = ["acl_command", "app"]

app = typer.Typer(help="Redis: the ACL users of taskgate's roles.", no_args_is_help=True)


@app.command("acl")
def acl_command(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
    ] = Path(".taskgate"),
    passwords_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of <role>.password files (default <state-dir>/redis-users)."),
    ] = None,
    placeholders: Annotated[
        bool, typer.Option("--placeholders", help="Never read password files.")
    ] = False,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Another queue tasks are routed to.")
    ] = None,
) -> None:
    """Print the ACL lines: `user default off`, then gateway, worker and operator."""
    folder = passwords_dir or state_dir / USERS_DIR
    hashes: dict[Role, str | None] = {}
    try:
        for role in ROLES:
            path = password_path(folder, role)
            if placeholders or not path.exists():
                hashes[role] = None
                continue
            hint = f"run `chmod 600 {path}`"
            hashes[role] = password_sha256(check_secret_file(path, setting=str(path), hint=hint))
        lines = render_acl(hashes, queues=queue or ())
    except (ConfigError, ValueError) as exc:
        typer.echo(f"taskgate redis acl: refused: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("\n".join(lines))
    missing = [role for role, digest in hashes.items() if digest is None]
    if missing and not placeholders:
        typer.echo(
            f"# no password file for {', '.join(missing)} in {folder}: replace the placeholder",
            err=True,
        )
