"""How every CLI command speaks: a readable table by default, exact JSON with ``--json``,
errors on stderr with a non-zero exit code, the exit codes in every ``--help``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NoReturn

import typer
import typer.core

__all__ = [
    "EXIT_CODES",
    "AsJson",
    "CliGroup",
    "echo_json",
    "echo_record",
    "echo_table",
    "fail",
]

EXIT_CODES = "Exit codes: 0 done; 1 refused, failed or unreachable; 2 bad usage or unsafe settings."

AsJson = Annotated[bool, typer.Option("--json", help="Print exact JSON instead of a table.")]

# Groups whose commands use Redis as the operator: each gets --state-dir (stack discovery).
REDIS_GROUPS = frozenset({"clients", "dlq", "audit", "operators"})


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    """Say what went wrong on stderr and exit with ``code``."""
    typer.echo(f"taskgate {command}: {message}", err=True)
    raise typer.Exit(code)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple | set | frozenset):
        return " ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, empty: str) -> None:
    """Rows under a header, columns padded to their widest cell; ``empty`` if no rows."""
    if not rows:
        typer.echo(empty)
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    for line in ([*columns], *cells):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def echo_record(record: Mapping[str, Any]) -> None:
    """One object as ``name: value`` lines."""
    width = max((len(name) for name in record), default=0)
    for name, value in record.items():
        typer.echo(f"{name.ljust(width)}  {_cell(value)}")


def _decorate(command: Any, *, redis: bool) -> None:
    from taskgate.cli.stack_discovery import redis_state_dir_option

    if not command.epilog:
        command.epilog = EXIT_CODES
    if isinstance(getattr(command, "commands", None), dict):  # a group (Typer's own click)
        for name, sub in command.commands.items():
            _decorate(sub, redis=redis or name in REDIS_GROUPS)
    elif redis and not any("--state-dir" in param.opts for param in command.params):
        command.params.append(redis_state_dir_option())


class CliGroup(typer.core.TyperGroup):
    """The root command: every command's ``--help`` ends with the exit codes, and every
    Redis command takes ``--state-dir`` and finds the running stack
    (:mod:`taskgate.cli.stack_discovery`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _decorate(self, redis=False)
