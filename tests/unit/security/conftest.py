"""Shows the leak guard's corpus rates in the terminal summary when the corpus test ran."""

from __future__ import annotations

import pytest

from tests.unit.security.leak_corpus import RATES_KEY


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """One line per rate (detection, false positive), from ``test_leak_corpus``."""
    rates = config.stash.get(RATES_KEY, None)
    if rates is None:
        return
    terminalreporter.section("leak guard corpus")
    for name, (hits, total) in rates.items():
        terminalreporter.write_line(f"{name} rate: {hits}/{total} = {hits / total:.1%}")
