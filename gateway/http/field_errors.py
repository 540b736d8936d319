"""What a 422 says about each invalid field: its path, the error kind and a fixed message.

pydantic's own messages can name internal classes or carry an object's repr (with its heap
address); they never reach a client. The messages are filled only from numeric limits.
"""

from __future__ import annotations

from typing import Any

__all__ = ["validation_errors"]

# What a 422 says about each kind of validation error.
_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
    "string_type": "must be a string",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "string_pattern_mismatch": "does not have the expected format",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "list_type": "must be a list",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be one of the allowed values",
    "enum": "must be one of the allowed values",
    "url_type": "must be a URL",
    "url_parsing": "must be a valid URL",
    "url_scheme": "must use an allowed URL scheme",
    "json_invalid": "is not valid JSON",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "datetime_type": "must be a date and time",
    "datetime_parsing": "must be a date and time",
    "forbidden_character": "contains a control, line-break or invisible formatting character",
    "email_too_long": "is too long for an email address",
    "email_control_character": "contains whitespace or a control character",
    "email_multiple": "must be exactly one email address",
    "email_invalid": "is not a valid email address",
    "unsafe_url": "is a URL that is not allowed",
    "value_error": "is not valid",
}
_NUMERIC_CTX = ("min_length", "max_length", "gt", "ge", "lt", "le")


def _message(kind: str, ctx: Any) -> str:
    template = _MESSAGES.get(kind, "is not valid")
    numbers = {
        name: value
        for name in _NUMERIC_CTX
        if isinstance(ctx, dict)
        and isinstance(value := ctx.get(name), int | float)
        and not isinstance(value, bool)
    }
    try:
        return template.format(**numbers)
    except (KeyError, IndexError):
        return "is not valid"


def validation_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Field paths and error kinds only: never the rejected input nor pydantic's own text."""
    out = []
    for err in errors[:50]:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        kind = str(err.get("type", "invalid"))
        if kind not in _MESSAGES:
            kind = "invalid"
        out.append(
            {
                "field": ".".join(loc)[:200] or "(body)",
                "kind": kind,
                "message": _message(kind, err.get("ctx")),
            }
        )
    return out
