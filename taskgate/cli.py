"""The one console script, `taskgate`. Commands live next to what they drive."""

from __future__ import annotations

import typer

from certs.cli import app as certs_app
from gateway.cli import serve_command
from taskgate.audit_cli import app as audit_app
from taskgate.cli_output import CliGroup
from taskgate.clients_cli import app as clients_app
from taskgate.dlq_cli import app as dlq_app
from taskgate.flower_cli import flower_command
from taskgate.keys_cli import app as keys_app
from taskgate.operators_cli import app as operators_app
from taskgate.redis_cli import app as redis_app
from taskgate.stats_cli import stats_command
from taskgate.tasks_cli import (
    TASK_EXIT_CODES,
    cancel_command,
    catalog_command,
    status_command,
    submit_command,
    tasks_command,
    wait_command,
)
from taskgate.token_cli import token_command
from taskgate.up import up_command
from workers.cli import worker_command

__all__ = ["app"]

app = typer.Typer(
    name="taskgate",
    cls=CliGroup,
    help="Security-hardened task gateway: HTTPS API in front, Celery workers behind, TLS between.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never dump locals (they may hold secrets)
)
app.command("up")(up_command)
app.command("serve")(serve_command)
app.command("worker")(worker_command)
app.add_typer(certs_app, name="certs")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(clients_app, name="clients")
app.add_typer(operators_app, name="operators")
app.add_typer(dlq_app, name="dlq")
app.add_typer(redis_app, name="redis")
app.command("token")(token_command)
app.command("stats")(stats_command)
for _name, _command in (
    ("submit", submit_command),
    ("status", status_command),
    ("wait", wait_command),
    ("tasks", tasks_command),
    ("cancel", cancel_command),
    ("catalog", catalog_command),
):
    app.command(_name, epilog=TASK_EXIT_CODES)(_command)
app.command("flower")(flower_command)
