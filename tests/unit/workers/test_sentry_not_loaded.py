"""Without TASKGATE_SENTRY_DSN, neither the gateway nor a worker loads sentry-sdk."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
import gateway.app, gateway.server, workers.app, workers.cli
from gateway.sentry_setup import init_sentry as gateway_init
from workers.sentry_setup import init_sentry as worker_init, report_time_limit
assert gateway_init(None) is False and worker_init(None) is False
report_time_limit("demo.task", 2.0)  # a hard time limit without Sentry: nothing to load
assert gateway_init("") is False and worker_init("") is False
print(sorted(m for m in sys.modules if m == "sentry_sdk" or m.startswith("sentry_sdk.")))
"""


def test_no_dsn_means_sentry_sdk_is_never_imported() -> None:
    """In a fresh interpreter, importing both process kinds, running their Sentry set-up
    without a DSN and reporting a hard time limit leave sentry_sdk out of sys.modules."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_with_a_dsn_sentry_sdk_is_loaded_by_the_worker_set_up() -> None:
    """The control: the same set-up with a (loopback) DSN does import sentry_sdk."""
    script = (
        "import sys\nfrom workers.sentry_setup import init_sentry\n"
        "assert init_sentry('http://k@127.0.0.1:9/1') is True\n"
        "print('sentry_sdk' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "True"


def test_a_dsn_without_sentry_sdk_installed_is_refused() -> None:
    """With a DSN but no sentry-sdk, both set-ups refuse to start (fail closed), naming the
    extra to install."""
    script = (
        "import sys\nsys.modules['sentry_sdk'] = None  # as if not installed\n"
        "from security.errors import ConfigError\n"
        "from gateway.sentry_setup import init_sentry as g\n"
        "from workers.sentry_setup import init_sentry as w\n"
        "for init in (g, w):\n"
        "    try:\n"
        "        init('https://k@sentry.example/1')\n"
        "    except ConfigError as exc:\n"
        "        print('refused', 'taskgate[sentry]' in str(exc))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["refused", "True", "refused", "True"]
