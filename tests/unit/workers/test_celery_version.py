"""The installed Celery, kombu and billiard are ones the worker's subclasses support."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
# The worker subclasses internals of these three (workers' consumer, request, pool,
# transport and result backend): a release outside the pinned range may break them quietly.
PINNED = ("celery", "kombu", "billiard")


def _requirements() -> dict[str, Requirement]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [Requirement(line) for line in config["project"]["dependencies"]]
    return {requirement.name: requirement for requirement in requirements}


@pytest.mark.parametrize("name", PINNED)
def test_pyproject_pins_a_closed_range(name: str) -> None:
    """Each of the three has both a lower and an upper bound in pyproject.toml."""
    requirement = _requirements().get(name)
    assert requirement is not None, f"pyproject.toml declares no version range for {name}"
    operators = {spec.operator for spec in requirement.specifier}
    assert operators & {">=", ">", "=="}, f"{requirement}: no lower bound"
    assert operators & {"<", "<=", "=="}, f"{requirement}: no upper bound"


@pytest.mark.parametrize("name", PINNED)
def test_installed_version_is_in_the_supported_range(name: str) -> None:
    """The installed release is inside the range the worker's subclasses are checked against."""
    requirement = _requirements()[name]
    installed = version(name)
    if not requirement.specifier.contains(installed, prereleases=True):
        pytest.fail(
            f"{name} {installed} is installed, but taskgate's worker supports only "
            f"{requirement} (pyproject.toml): its subclasses of {name} internals are not "
            f"known to work with {installed}; check them and widen the range, or install "
            f"a supported release"
        )
