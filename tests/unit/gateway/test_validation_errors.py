"""422 bodies: field paths and error kinds from a fixed table, never pydantic's own text."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.http.errors import validation_errors


class _Thing:
    pass


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=5)]
    count: Annotated[int, Field(ge=1, le=10)] = 1
    tags: Annotated[list[str], Field(max_length=2)] = []

    @field_validator("name")
    @classmethod
    def _no_x(cls, value: str) -> str:
        if value == "x":
            raise ValueError(f"bad value {_Thing()!r}")  # a repr with a heap address
        return value


def _errors(data: object) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as err:
        Payload.model_validate(data)
    return validation_errors(err.value.errors(include_input=False))


def test_limits_are_stated_from_their_numbers() -> None:
    """A too-long string says its limit, from the constraint's number only."""
    (error,) = _errors({"name": "abcdefgh"})
    assert error == {
        "field": "name",
        "kind": "string_too_long",
        "message": "must have at most 5 characters",
    }


def test_nested_paths_are_dotted() -> None:
    """A list item's path names the field and the index."""
    (error,) = _errors({"name": "a", "tags": ["ok", 3]})
    assert error["field"] == "tags.1"
    assert error["kind"] == "string_type"


def test_a_validator_message_with_a_repr_is_not_shown() -> None:
    """A custom validator's text (here an object repr with 0x...) is replaced by fixed text."""
    (error,) = _errors({"name": "x"})
    assert error["kind"] == "value_error"
    assert "0x" not in error["message"]
    assert "_Thing" not in error["message"]


def test_unknown_kinds_become_invalid() -> None:
    """An error type outside the table is reported as 'invalid' with a generic message."""
    errors = validation_errors([{"loc": ("body", "a"), "type": "weird<0x7f>", "msg": "<0x7f>"}])
    assert errors == [{"field": "a", "kind": "invalid", "message": "is not valid"}]


def test_extra_missing_and_range_errors_each_have_a_kind() -> None:
    """Every common mistake maps to its own kind and a readable message."""
    errors = _errors({"count": 0, "other": 1})
    kinds = {e["field"]: e["kind"] for e in errors}
    assert kinds == {"name": "missing", "count": "greater_than_equal", "other": "extra_forbidden"}
    assert {e["message"] for e in errors} >= {"is required", "must be at least 1"}


def test_at_most_fifty_errors_are_listed() -> None:
    """A huge invalid document cannot make the error body huge."""
    many = [{"loc": ("body", str(i)), "type": "missing"} for i in range(500)]
    assert len(validation_errors(many)) == 50
