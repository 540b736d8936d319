"""Fixtures for the security unit tests, and the leak guard's corpus rates in the summary.

``keys_dir`` and ``ring_dir`` are the key folders the key-store tests share; ``key``,
``keys``, ``gateway_signer``, ``worker_verifiers`` and ``sealed`` the keys and envelope the
sealing tests share; the corpus rates are shown in the terminal summary when the corpus
test ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from security.keys import KeySet, SigningKey, SymmetricKey
from security.keystore import init_keys
from security.sealing import seal
from tests.support import envelopes
from tests.support.key_folders import NOW

Rates = dict[str, tuple[int, int]]
_RATES = pytest.StashKey[Rates]()


@pytest.fixture
def record_leak_rates(request: pytest.FixtureRequest) -> Callable[[Rates], None]:
    """Keep ``{name: (hits, total)}`` for the summary line of each rate."""

    def record(rates: Rates) -> None:
        request.config.stash[_RATES] = rates

    return record


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """Where a key-store test's keys folder goes (not made yet)."""
    return tmp_path / "state" / "keys"


@pytest.fixture
def ring_dir(keys_dir: Path) -> Path:
    """A keys folder made at ``NOW`` with one key per purpose."""
    init_keys(keys_dir, now=NOW)
    return keys_dir


@pytest.fixture
def key() -> SymmetricKey:
    """The broker key a sealing test seals with."""
    return envelopes.sym("broker-1")


@pytest.fixture
def keys(key: SymmetricKey) -> KeySet[SymmetricKey]:
    """The broker ring holding ``key``."""
    return envelopes.broker(key)


@pytest.fixture
def gateway_signer() -> SigningKey:
    """The gateway's signing key (with its private half)."""
    return envelopes.signer()


@pytest.fixture
def worker_verifiers(gateway_signer: SigningKey) -> KeySet[SigningKey]:
    """What a worker verifies with: the public half of ``gateway_signer``."""
    return envelopes.verifiers(envelopes.public_only(gateway_signer))


@pytest.fixture
def sealed(keys: KeySet[SymmetricKey], gateway_signer: SigningKey) -> bytes:
    """``envelopes.SECRET`` sealed for the test task at ``envelopes.NOW``, signed."""
    return seal(
        envelopes.SECRET,
        task_id=envelopes.TASK_ID,
        task_name=envelopes.TASK_NAME,
        keys=keys,
        signer=gateway_signer,
        ttl=envelopes.TTL,
        now=envelopes.NOW,
    )


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
