"""The one console script, `taskgate`. Commands live next to what they drive."""

from __future__ import annotations

import typer

from certs.cli import app as certs_app
from gateway.cli import serve_command
from taskgate.cli.audit import app as audit_app
from taskgate.cli.clients import app as clients_app
from taskgate.cli.dlq import app as dlq_app
from taskgate.cli.flower import flower_command
from taskgate.cli.keys import app as keys_app
from taskgate.cli.operators import app as operators_app
from taskgate.cli.output import CliGroup
from taskgate.cli.redis_acl import app as redis_app
from taskgate.cli.stats import stats_command
from taskgate.cli.tasks import (
    TASK_EXIT_CODES,
    cancel_command,
    catalog_command,
    status_command,
    submit_command,
    tasks_command,
    wait_command,
)
from taskgate.cli.tokens import token_command
from taskgate.devstack.up import up_command
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
