"""`taskgate up`: the whole local stack (:mod:`taskgate.devstack.stack`) in one command, stopped
cleanly by Ctrl-C or SIGTERM.

Picks the gateway's port, starts the stack, writes ``<state>/stack.json`` and prints the
summary (the admin token once), then watches the processes: if one dies, the stack is
stopped and the command exits 1; unsafe settings exit 2 before anything starts.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from security.errors import ConfigError
from taskgate.devstack.procs import free_port
from taskgate.devstack.redis_server import RedisServerError
from taskgate.devstack.stack import Stack, StackError
from taskgate.devstack.stack_files import print_summary, write_stack_json

__all__ = ["up_command"]


def up_command(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", envvar="TASKGATE_STATE_DIR", help="State folder.")
    ] = Path(".taskgate"),
    port: Annotated[int, typer.Option(help="Gateway HTTPS port; 0 picks a free one.")] = 8443,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(help="Also write the admin token to this file (0600); default: print only."),
    ] = None,
    reset_demo_client: Annotated[
        bool,
        typer.Option(
            "--reset-demo-client", help="Give the demo client a new secret (the old one stops)."
        ),
    ] = False,
) -> None:
    """Start the whole local stack: TLS Redis, a worker and the HTTPS gateway."""
    if port == 0 or not _port_free(port):
        port = free_port()
    stack = Stack(
        state_dir,
        admin_token_file=None if admin_token_file is None else admin_token_file.resolve(),
        reset_demo_client=reset_demo_client,
    )
    stop_requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        info = stack.start(port=port, concurrency=concurrency)
        stack_json = state_dir / "stack.json"
        write_stack_json(stack_json, info)
        print_summary(info, stack_json, stack.admin_token, demo_note=stack.demo_note)
        while not stop_requested:
            dead = stack.dead_child()
            if dead is not None:
                typer.echo(
                    f"taskgate up: {dead.name} exited with code {dead.process.returncode}; "
                    f"stopping the stack. Last lines of {dead.log_path}:\n{dead.log_tail(30)}",
                    err=True,
                )
                code = 1
                break
            time.sleep(0.3)
        if stop_requested:
            typer.echo("\nstopping taskgate...")
    except ConfigError as exc:
        typer.echo(f"taskgate up: refused: {exc}", err=True)
        code = 2
    except (StackError, RedisServerError) as exc:
        typer.echo(f"taskgate up: {exc}", err=True)
        code = 1
    finally:
        stack.stop()
    if code == 0:
        typer.echo("stopped.")
    sys.stdout.flush()
    raise typer.Exit(code)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
