"""Operator names and credentials: shape checks that need no Redis."""

from __future__ import annotations

import pytest

from gateway.stores.operators import OperatorError, check_name, operator_name_of


@pytest.mark.parametrize("name", ["alice", "a", "ops_1", "bob-2", "x" * 32])
def test_check_name_accepts_lowercase_names(name: str) -> None:
    """Lowercase letters, digits, _ and -, starting with a letter, up to 32 characters."""
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Alice", "1ops", "a" * 33, "client:x", "a.b", "a b", "admin", "worker", "anonymous"],
)
def test_check_name_refuses_malformed_and_reserved_names(name: str) -> None:
    """Anything else, and the names other audit actors use, are refused."""
    with pytest.raises(OperatorError):
        check_name(name)


@pytest.mark.parametrize(
    ("credential", "name"),
    [
        ("tga_alice.abcdef", "alice"),
        ("tga_abcdefABCDEF-_0123456789", None),  # the bootstrap admin token: no dot
        ("tga_.abc", None),
        ("tga_alice.", None),
        ("tga_Alice.abc", None),
        ("tgs_alice.abc", None),  # a client secret
        ("eyJhbGciOi.x.y", None),  # a client access token (JWT)
    ],
)
def test_operator_name_of_reads_only_named_credentials(credential: str, name: str | None) -> None:
    """The name a credential claims, only for ``tga_<name>.<random>``."""
    assert operator_name_of(credential) == name
