"""The CLI finds the stack: commands that talk to Redis or the gateway use the state folder's
``stack.json`` when no explicit setting is given, and say on stderr which stack that is.

The state folder is ``--state-dir``, else ``TASKGATE_STATE_DIR``, else ``.taskgate`` in the
working directory (:func:`taskgate.client.find_state_dir`). Redis commands act as the
operator role: with ``TASKGATE_REDIS_URL`` unset, the stack's Redis URL and its state folder
(where the operator's client certificate, keys and Redis password live, as `taskgate up`
made them) become the settings the command reads. An explicit ``TASKGATE_REDIS_URL`` wins
and nothing is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main

from taskgate.client.stackfile import StackFileError, StackInfo, find_state_dir

__all__ = ["STATE_DIR_HELP", "describe", "use_stack_for_redis"]

STATE_DIR_HELP = (
    "State folder of a `taskgate up` stack whose stack.json to use"
    " (default: TASKGATE_STATE_DIR, else ./.taskgate)."
)


# Settings naming files elsewhere would mix another deployment's files into the stack's.
_FILE_SETTINGS = (
    "TASKGATE_CA_FILE",
    "TASKGATE_CLIENT_CERT",
    "TASKGATE_CLIENT_KEY",
    "TASKGATE_REDIS_PASSWORD_FILE",
    "TASKGATE_KEYS_DIR",
    "TASKGATE_TLS_CERT",
    "TASKGATE_TLS_KEY",
)


def _say(message: str) -> None:
    typer.echo(f"taskgate: {message}", err=True)


def describe(info: StackInfo) -> str:
    """One line naming the stack, with a warning if its `taskgate up` is gone."""
    where = info.state_dir.resolve()
    note = "" if info.running else " - its `taskgate up` is not running"
    return f"using the stack in {where}{note}"


def use_stack_for_redis(state_dir: Path | None) -> StackInfo | None:
    """Point the operator settings at the stack's Redis, unless ``TASKGATE_REDIS_URL`` is
    set (and no ``state_dir`` given); say which stack on stderr. None: no stack.json used
    (the command reports a missing setting itself)."""
    if os.environ.get("TASKGATE_REDIS_URL") and state_dir is None:
        return None  # explicit settings: used as they are, stdout and stderr left alone
    try:
        info = StackInfo.load(find_state_dir(state_dir))
    except StackFileError as exc:
        if state_dir is not None:  # asked for explicitly: say why it was not used
            _say(str(exc))
        return None
    os.environ["TASKGATE_REDIS_URL"] = info.redis_url
    os.environ["TASKGATE_STATE_DIR"] = str(info.state_dir.resolve())
    for setting in _FILE_SETTINGS:
        os.environ.pop(setting, None)  # the stack's own files, at their defaults
    named = os.environ.get("TASKGATE_OPERATOR_TOKEN") or os.environ.get(
        "TASKGATE_OPERATOR_TOKEN_FILE"
    )
    if not named and info.operator_token_file is not None:
        # the stack's CLI operator (taskgate.cli.local_operator): changes audited as `local`
        os.environ["TASKGATE_OPERATOR_TOKEN_FILE"] = str(info.operator_token_file)
    _say(f"{describe(info)} (redis {info.redis_url} as operator)")
    return info


def _found(value: Path | None) -> None:
    use_stack_for_redis(value)


def _probe(
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help=STATE_DIR_HELP, callback=_found, expose_value=False),
    ] = None,
) -> None:
    """Never run: Typer builds ``--state-dir`` from this signature."""


def redis_state_dir_option() -> Any:
    """``--state-dir`` for a Redis command (a parameter of Typer's own click): it finds the
    stack before the command runs. Built from :func:`_probe` so that Typer makes the
    parameter exactly as for a declared option."""
    probe = typer.Typer()
    probe.command()(_probe)
    command = typer.main.get_command(probe)
    return next(param for param in command.params if "--state-dir" in param.opts)
