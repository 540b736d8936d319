"""`taskgate token`: print an access token for a client, for scripts.

It asks the running gateway (``POST /v1/token``) like any client would; with no options
it uses the demo client and gateway recorded in ``<state>/stack.json`` by `taskgate up`.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Annotated

import httpx
import typer

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
    state_dir: Annotated[
        Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
    ] = Path(".taskgate"),
) -> None:
    """Print an access token (only the token, on stdout)."""
    stack: dict[str, object] = {}
    stack_file = state_dir / "stack.json"
    if stack_file.is_file():
        stack = json.loads(stack_file.read_text())
    demo = stack.get("demo_client") if isinstance(stack.get("demo_client"), dict) else {}
    creds = demo if isinstance(demo, dict) else {}
    client_id = client_id or str(creds.get("client_id", "") or "")
    client_secret = client_secret or str(creds.get("client_secret", "") or "")
    gateway_url = gateway_url or str(stack.get("gateway_url", "") or "")
    ca = ca_file or (Path(str(stack["ca_file"])) if stack.get("ca_file") else None)
    if not (client_id and client_secret and gateway_url and ca):
        typer.echo(
            "taskgate token: need --client-id, --client-secret, --gateway-url and --ca-file "
            "(or a stack.json from `taskgate up`)",
            err=True,
        )
        raise typer.Exit(2)
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
            verify=ssl.create_default_context(cafile=str(ca)),
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
