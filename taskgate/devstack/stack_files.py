"""What `taskgate up` writes and prints: ``stack.json``, private files, the summary.

``stack.json`` (0600) describes the running stack: URLs, the CA, the role folders, the
demo client's credentials and the SMTP sink's; never the admin token, which is printed
once or written only where ``--admin-token-file`` says. The summary printed to the terminal
holds no client or SMTP secret: its curl line reads the demo secret from ``stack.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

__all__ = ["print_summary", "write_stack_json"]

# Prints the grant's form body from stack.json to stdout (a pipe into curl): the demo
# secret reaches neither the terminal nor a command line (``ps``).
_GRANT_FORM = (
    '\'import json,sys; c=json.load(open(sys.argv[1]))["demo_client"];'
    ' print("grant_type=client_credentials&client_id=%s&client_secret=%s"'
    ' % (c["client_id"], c["client_secret"]))\''
)


def write_stack_json(path: Path, info: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    path.chmod(0o600)


def print_summary(
    info: dict[str, Any], stack_json: Path, admin_token: str, *, demo_note: str = ""
) -> None:
    ca = info["ca_file"]
    url = info["gateway_url"]
    payload = (
        '{"title":"demo","columns":["city","sales"],"rows":[["Oslo",12],["Lima",7],["Pune",9]]}'
    )
    lines = [
        "",
        "taskgate is up.",
        f"  gateway   {url}  (HTTPS, certificate from the local CA)",
        f"  console   {info['console_url']}  (sign in with the admin token)",
        f"  redis     {info['redis_url']}  (TLS only, client certificates required)",
        f"  CA        {ca}",
        f"  logs      {Path(info['state_dir']) / 'logs'}",
        f"  details   {stack_json}",
        "",
        "Check it:",
        f"  curl --cacert {ca} {url}/readyz",
        "",
        "Submit a real task as the demo client (token -> submit -> poll); its secret is read"
        f" from {stack_json.name}, never shown:",
        f"  TOKEN=$(python3 -c {_GRANT_FORM} {stack_json}"
        f" | curl -s --cacert {ca} --data @- {url}/v1/token"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  ID=$(curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN"'
        f" -H 'Content-Type: application/json' -d '{payload}' {url}/v1/tasks/report.generate"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')",
        f'  until curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN" {url}/v1/tasks/$ID'
        ' | grep -Eq \'"status":"(succeeded|failed|dead_lettered|revoked)"\'; do sleep 1; done',
        f'  curl -s --cacert {ca} -H "Authorization: Bearer $TOKEN" {url}/v1/tasks/$ID',
        "",
        "Or with the CLI (on PATH once the virtual environment is active:"
        " `source .venv/bin/activate`):",
        f"  taskgate submit report.generate{_state_dir_option(stack_json)} --data '{payload}'"
        " --wait",
        "",
        f"Demo client and SMTP sink credentials: {stack_json} (mode 0600)"
        + (f"; {demo_note}." if demo_note else "."),
        _admin_line(info, admin_token),
        "Press Ctrl-C to stop everything.",
    ]
    typer.echo("\n".join(lines))


def _admin_line(info: dict[str, Any], admin_token: str) -> str:
    if info.get("admin_token_file"):
        return f"Admin token: in {info['admin_token_file']} (mode 0600)."
    return f"Admin token (shown once, stored nowhere): {admin_token}"


def _state_dir_option(stack_json: Path) -> str:
    """`` --state-dir DIR`` unless the CLI finds the folder by itself (./.taskgate)."""
    folder = stack_json.parent
    try:
        if folder.resolve() == (Path.cwd() / ".taskgate").resolve():
            return ""
    except OSError:
        pass
    return f" --state-dir {folder}"
