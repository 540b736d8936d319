"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {heading}"
    return match.group(1)


def test_add_your_own_task_example_declares_a_working_task() -> None:
    """The example registers billing.invoice with its secret field, scope and limits."""
    code = _block_after("## Add your own task").replace("    ...\n", "    key.upper()\n")
    check = (
        code + "\nfrom workers.catalogue import default_catalogue\n"
        "spec = default_catalogue.get('billing.invoice')\n"
        "assert spec is not None\n"
        "assert spec.secret_fields == ('api_key',)\n"
        "assert spec.scope == 'tasks:submit:billing.invoice'\n"
        "assert spec.retry.max_attempts == 5\n"
        "m = spec.schema.model_validate(\n"
        "    {'customer': 'a@example.com', 'reference': 'INV-1', 'api_key': 'k'})\n"
        "assert '**' in repr(m.api_key)\n"
        "assert spec.fn(m) == {'status': 'created'}\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
