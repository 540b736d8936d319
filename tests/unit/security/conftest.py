"""Shows the leak guard's corpus rates in the terminal summary when the corpus test ran."""

from __future__ import annotations

from collections.abc import Callable

import pytest

Rates = dict[str, tuple[int, int]]
_RATES = pytest.StashKey[Rates]()


@pytest.fixture
def record_leak_rates(request: pytest.FixtureRequest) -> Callable[[Rates], None]:
    """Keep ``{name: (hits, total)}`` for the summary line of each rate."""

    def record(rates: Rates) -> None:
        request.config.stash[_RATES] = rates

    return record


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """One line per rate (detection, false positive), from ``test_leak_corpus``."""
    rates = config.stash.get(_RATES, None)
    if rates is None:
        return
    terminalreporter.section("leak guard corpus")
    for name, (hits, total) in rates.items():
        terminalreporter.write_line(f"{name} rate: {hits}/{total} = {hits / total:.1%}")
