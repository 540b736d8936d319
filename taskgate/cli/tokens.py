"""`taskgate token`: print an access token for a client, for scripts.

It asks the running gateway (``POST /v1/token``) like any client would; what no option
gives comes from ``<state>/stack.json`` (the demo client, the gateway and its CA, as
`taskgate up` recorded them), and then stderr says which stack that is.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

import httpx
import typer

from taskgate.cli.stack_discovery import STATE_DIR_HELP, describe
from taskgate.client.stackfile import StackFileError, StackInfo, find_state_dir

__all__ = ["token_command"]


def token_command(
    *,
    client_id: Annotated[
        str | None, typer.Option(help="Client id (default: the demo client).")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="TASKGATE_CLIENT_SECRET", help="Client secret (or TASKGATE_CLIENT_SECRET)."
        ),
    ] = None,
    scope: Annotated[str | None, typer.Option(help="Space-separated scopes to ask for.")] = None,
    gateway_url: Annotated[
        str | None, typer.Option(help="Gateway URL (default: stack.json).")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA to verify the gateway (default: stack.json).")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help=STATE_DIR_HELP)] = None,
) -> None:
    """Print an access token (only the token, on stdout; which stack it used, on stderr)."""
    stack: StackInfo | None = None
    why = "it lacks the demo client"
    if not (client_id and client_secret and gateway_url and ca_file):
        try:
            stack = StackInfo.load(find_state_dir(state_dir))
        except StackFileError as exc:
            why = str(exc)
    if stack is not None:
        demo = client_id in {None, stack.demo_client_id}
        client_id = client_id or stack.demo_client_id
        if client_secret is None and demo and stack.demo_client_secret is not None:
            client_secret = stack.demo_client_secret.get_secret_value()
        gateway_url = gateway_url or stack.gateway_url
        ca_file = ca_file or stack.ca_file
    if not (client_id and client_secret and gateway_url and ca_file):
        typer.echo(
            "taskgate token: need --client-id, --client-secret, --gateway-url and --ca-file "
            f"(or a stack.json from `taskgate up`; {why})",
            err=True,
        )
        raise typer.Exit(2)
    if stack is not None:  # stdout stays the token alone
        where = f"{describe(stack)}, gateway {gateway_url}, client {client_id}"
        typer.echo(f"taskgate: {where}", err=True)
    data = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    if scope:
        data["scope"] = scope
    try:
        response = httpx.post(
            f"{gateway_url.rstrip('/')}/v1/token",
            data=data,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            timeout=15,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"taskgate token: {type(exc).__name__} talking to {gateway_url}", err=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        detail = (
            response.json().get("error", response.status_code)
            if response.content
            else response.status_code
        )
        typer.echo(f"taskgate token: refused ({detail})", err=True)
        raise typer.Exit(1)
    typer.echo(response.json()["access_token"])
