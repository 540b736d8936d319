"""Installing the project prints no deprecation warning caused by pyproject.toml."""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

PYPROJECT = Path(__file__).resolve().parents[1].parent / "pyproject.toml"


def test_pyproject_applies_without_a_warning() -> None:
    """setuptools reads the project table (license as an SPDX string) with no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), PYPROJECT)
    assert dist.get_name() == "taskgate"
    assert dist.metadata.license_expression == "Apache-2.0"
