"""The child processes whose log tails a failing test's report shows.

Every helper and fixture that starts a server registers it here; the report hook in
``tests/conftest.py`` reads the list. One module, so there is one list.
"""

from __future__ import annotations

from taskgate.devstack.procs import Child

__all__ = ["register_log", "registered_logs"]

_LOGS: list[Child] = []


def register_log(child: Child) -> None:
    """Show ``child``'s log tail in the report of any test that fails while it runs."""
    _LOGS.append(child)


def registered_logs() -> tuple[Child, ...]:
    """Every child registered so far, oldest first."""
    return tuple(_LOGS)
