"""Pydantic validation failures as the input-sanitising tests read them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError


def first_error(adapter: TypeAdapter[Any], value: object) -> dict[str, Any]:
    """The first error (without the input) that validating ``value`` raises."""
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    return dict(info.value.errors(include_input=False, include_url=False)[0])
