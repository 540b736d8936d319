"""`taskgate submit|status|wait|tasks|cancel|catalog`: the client API from the command line.

They use the Python SDK (:mod:`taskgate.client`) as the running stack's demo client by
default - gateway, CA and credentials from ``stack.json`` - or the client given by
``--client-id`` and ``TASKGATE_CLIENT_SECRET`` (never a command-line argument: ``ps`` shows
those) with ``--gateway-url`` and ``--ca-file``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from taskgate.cli.output import AsJson, echo_json, echo_record, echo_table, fail
from taskgate.cli.stack_discovery import STATE_DIR_HELP, describe
from taskgate.client import (
    ApiError,
    Client,
    ConnectionFailed,
    StackFileError,
    StackInfo,
    Task,
    TaskgateClientError,
    ValidationFailed,
    WaitTimeout,
    find_state_dir,
)
from workers.contract.states import TaskState

__all__ = [
    "cancel_command",
    "catalog_command",
    "status_command",
    "submit_command",
    "tasks_command",
    "wait_command",
]

T = TypeVar("T")

TASK_EXIT_CODES = (
    "Exit codes: 0 done (with --wait or `wait`: the task succeeded); 1 refused, failed or"
    " unreachable; 2 bad usage or settings; 3 the task ended without success (failed,"
    " dead_lettered, revoked); 4 still running when the wait timed out."
)

StateDir = Annotated[Path | None, typer.Option("--state-dir", help=STATE_DIR_HELP)]
GatewayUrl = Annotated[
    str | None,
    typer.Option(envvar="TASKGATE_GATEWAY_URL", help="Gateway URL (default: stack.json)."),
]
CaFile = Annotated[
    Path | None,
    typer.Option(
        envvar="TASKGATE_GATEWAY_CA_FILE", help="CA of the gateway (default: stack.json)."
    ),
]
ClientId = Annotated[
    str | None,
    typer.Option(envvar="TASKGATE_CLIENT_ID", help="API client id (default: the demo client)."),
]
TaskId = Annotated[str, typer.Argument(help="The task id (from `taskgate submit`).")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for a final state.")]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and as whom the command talks (no secret in its repr)."""

    gateway_url: str | None
    ca_file: Path | None
    client_id: str | None
    state_dir: Path | None


def _client(command: str, target: Target) -> Client:
    """The SDK client: explicit settings first, the stack's demo client for the rest."""
    secret = os.environ.get("TASKGATE_CLIENT_SECRET") or None
    info: StackInfo | None = None
    if not (target.gateway_url and target.ca_file and target.client_id and secret):
        try:
            info = StackInfo.load(find_state_dir(target.state_dir))
        except StackFileError as exc:
            fail(
                command,
                f"{exc}; or give --gateway-url, --ca-file, --client-id and TASKGATE_CLIENT_SECRET",
                2,
            )
    gateway_url = target.gateway_url or (info.gateway_url if info else None)
    ca_file = target.ca_file or (info.ca_file if info else None)
    client_id = target.client_id or (info.demo_client_id if info else None)
    if secret is None and info is not None and client_id == info.demo_client_id:
        secret = info.demo_client_secret.get_secret_value() if info.demo_client_secret else None
    if not (gateway_url and client_id and secret):
        fail(command, "no client: give --client-id with TASKGATE_CLIENT_SECRET", 2)
    where = describe(info) + ", " if info is not None else "using "
    typer.echo(f"taskgate: {where}gateway {gateway_url}, client {client_id}", err=True)
    try:
        return Client(gateway_url, client_id, secret, ca_file=ca_file)
    except (ValueError, OSError) as exc:
        fail(command, f"cannot set up the client ({exc})", 2)


def _call(command: str, target: Target, operation: Callable[[Client], T]) -> T:
    """Run ``operation`` with the client; every SDK error becomes a message and exit 1."""
    with _client(command, target) as client:
        try:
            return operation(client)
        except WaitTimeout as exc:
            _clear_progress()
            fail(command, str(exc), 4)
        except ApiError as exc:
            detail = exc.detail
            if isinstance(exc, ValidationFailed):
                fields = "; ".join(f"{e.field} {e.message}" for e in exc.errors)
                detail = f"{detail}: {fields}" if fields else detail
            rid = f" (request {exc.request_id})" if exc.request_id else ""
            fail(command, f"{exc.status} {exc.title}: {detail}{rid}")
        except (ConnectionFailed, TaskgateClientError) as exc:
            fail(command, str(exc))


def task_json(task: Task) -> dict[str, Any]:
    """A task for ``--json``: every field, null when unset, so scripts see one shape."""
    return dataclasses.asdict(task)


def _show(task: Task, as_json: bool) -> None:
    if as_json:
        echo_json(task_json(task))
        return
    record = {k: v for k, v in task_json(task).items() if v is not None}
    for stamp in ("submitted_at", "started_at", "finished_at"):
        if stamp in record:
            record[stamp] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record[stamp]))
    if "result" in record:
        record["result"] = json.dumps(record["result"], separators=(",", ":"))
    echo_record(record)


def _ended(task: Task) -> None:
    """Exit 3 when the task ended without success."""
    if task.finished and task.status != TaskState.SUCCEEDED:
        raise typer.Exit(3)


# --- progress ----------------------------------------------------------------------------

_SPINNER = "|/-\\"


def _progress(task_id: str) -> Callable[[Task], None] | None:
    """A one-line indicator on stderr while waiting, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()
    polls = [0]

    def show(task: Task) -> None:
        polls[0] += 1
        spin = _SPINNER[polls[0] % len(_SPINNER)]
        elapsed = time.monotonic() - started
        sys.stderr.write(
            f"\r{spin} {task_id}: {task.status} (attempt {task.attempts}) {elapsed:5.1f}s "
        )
        sys.stderr.flush()

    return show


def _clear_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _read_payload(command: str, data: str) -> Any:
    """``--data``: inline JSON, ``@file.json``, or ``@-`` for standard input."""
    try:
        if data == "@-":
            text = sys.stdin.read()
        elif data.startswith("@"):
            text = Path(data[1:]).read_text()
        else:
            text = data
        return json.loads(text)
    except OSError as exc:
        fail(command, f"cannot read {data[1:]} ({type(exc).__name__})", 2)
    except ValueError:
        fail(command, "--data is not valid JSON", 2)


# --- commands ----------------------------------------------------------------------------


def submit_command(
    task: Annotated[str, typer.Argument(help="The task name, e.g. report.generate.")],
    *,
    data: Annotated[
        str, typer.Option("--data", "-d", help="Payload: JSON, @file.json, or @- for stdin.")
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Idempotency-Key (default: a new one; the same key is one task)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the task to finish.")] = False,
    timeout: Timeout = 300.0,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """Submit a task; print its id (with --wait: its final state and result)."""
    payload = _read_payload("submit", data)
    target = Target(gateway_url, ca_file, client_id, state_dir)

    def run(client: Client) -> tuple[Any, Task | None]:
        accepted = client.submit(task, payload, idempotency_key=idempotency_key)
        if not wait:
            return accepted, None
        done = client.wait(accepted.id, timeout, on_poll=_progress(accepted.id))
        _clear_progress()
        return accepted, done

    accepted, done = _call("submit", target, run)
    if done is not None:
        _show(done, as_json)
        _ended(done)
        return
    if as_json:
        echo_json(dataclasses.asdict(accepted))
        return
    replayed = " (replayed: accepted before with this Idempotency-Key)" if accepted.replayed else ""
    typer.echo(f"{accepted.id}")
    typer.echo(
        f"taskgate submit: {accepted.status}{replayed}; follow with `taskgate wait {accepted.id}`",
        err=True,
    )


def status_command(
    task_id: TaskId,
    *,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """Show a task's state, timings, and its result or error."""
    target = Target(gateway_url, ca_file, client_id, state_dir)
    _show(_call("status", target, lambda c: c.get(task_id)), as_json)


def wait_command(
    task_id: TaskId,
    *,
    timeout: Timeout = 300.0,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """Wait until a task finishes (a progress line on a terminal); show its final state."""
    target = Target(gateway_url, ca_file, client_id, state_dir)

    def run(client: Client) -> Task:
        done = client.wait(task_id, timeout, on_poll=_progress(task_id))
        _clear_progress()
        return done

    done = _call("wait", target, run)
    _show(done, as_json)
    _ended(done)


def tasks_command(
    *,
    status: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (0: all).")] = 50,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """List the client's tasks, newest first."""
    target = Target(gateway_url, ca_file, client_id, state_dir)

    def run(client: Client) -> list[Task]:
        found: list[Task] = []
        for task in client.tasks(status=status):
            found.append(task)
            if limit and len(found) >= limit:
                break
        return found

    found = _call("tasks", target, run)
    if as_json:
        echo_json([task_json(task) for task in found])
        return
    rows = [
        {
            "id": task.id,
            "task": task.task,
            "status": task.status,
            "attempts": task.attempts,
            "submitted": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.submitted_at))
            if task.submitted_at
            else None,
        }
        for task in found
    ]
    echo_table(
        rows,
        ["id", "task", "status", "attempts", "submitted"],
        empty="no tasks" + (f" in state {status}" if status else ""),
    )


def cancel_command(
    task_id: TaskId,
    *,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """Cancel a task: a queued one never runs; a running cancellable one is stopped."""
    target = Target(gateway_url, ca_file, client_id, state_dir)
    task = _call("cancel", target, lambda c: c.cancel(task_id))
    if as_json:
        echo_json({"id": task.id, "status": task.status})
    else:
        typer.echo(f"{task.id} {task.status}")


def catalog_command(
    *,
    as_json: AsJson = False,
    state_dir: StateDir = None,
    gateway_url: GatewayUrl = None,
    ca_file: CaFile = None,
    client_id: ClientId = None,
) -> None:
    """List the tasks the client may submit (with --json: their JSON Schemas too)."""
    target = Target(gateway_url, ca_file, client_id, state_dir)
    entries = _call("catalog", target, lambda c: c.catalog())
    if as_json:
        echo_json([dataclasses.asdict(entry) for entry in entries])
        return
    rows = [
        {
            "name": e.name,
            "secret_fields": list(e.secret_fields),
            "rate_limit": e.rate_limit,
            "max_bytes": e.max_payload_bytes,
            "description": e.description,
        }
        for e in entries
    ]
    echo_table(
        rows,
        ["name", "secret_fields", "rate_limit", "max_bytes", "description"],
        empty="no tasks this client may submit",
    )
