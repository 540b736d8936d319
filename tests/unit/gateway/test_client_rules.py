"""The client registry's pure rules: ids, names, scopes and limits, without Redis."""

from __future__ import annotations

import pytest

from gateway.stores.client_rules import (
    ClientError,
    check_max_queued,
    check_name,
    check_rate_limit,
    client_key,
    is_valid_client_id,
    scope_allows,
    slug,
    validate_scopes,
)


@pytest.mark.parametrize("client_id", ["app-0123abcd", "billing-team-89abcdef", "a-00000000"])
def test_well_formed_ids_are_accepted_and_keyed(client_id: str) -> None:
    """``<slug>-<8 hex>`` ids are valid and their key ends with the id."""
    assert is_valid_client_id(client_id)
    assert client_key(client_id).endswith(client_id)


@pytest.mark.parametrize(
    "client_id",
    ["../x", "a:b-0123abcd", "app-0123ABCD", "app-0123abc", "-app-0123abcd", "", None, 7],
)
def test_malformed_ids_never_reach_a_key(client_id: object) -> None:
    """Path tricks, colons, wrong hex and non-strings are refused before any key is built."""
    assert not is_valid_client_id(client_id)
    with pytest.raises(ClientError) as info:
        client_key(client_id)  # type: ignore[arg-type]
    assert info.value.reason == "unknown_client"


def test_slug_lowercases_and_joins_with_dashes() -> None:
    """Names become id prefixes of a-z0-9 and single dashes, at most 32 characters."""
    assert slug("Billing Team!") == "billing-team"
    assert len(slug("x" * 100)) == 32
    assert not slug("a" * 31 + " b").endswith("-")


@pytest.mark.parametrize("name", ["Billing", "app 1", "a.b_c-d"])
def test_printable_names_are_kept(name: str) -> None:
    """Plain printable ASCII names pass unchanged."""
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", " lead", "x" * 65, "caf\u00e9", "a\nb", None])
def test_names_outside_the_grammar_are_refused(name: object) -> None:
    """Empty, over-long, non-ASCII, multi-line or non-string names are refused."""
    with pytest.raises(ClientError) as info:
        check_name(name)
    assert info.value.reason == "bad_name"


def test_scopes_split_on_whitespace_and_deduplicate() -> None:
    """A scope string is split on whitespace; the result is a set."""
    assert validate_scopes("tasks:read  tasks:read audit:read") == {"tasks:read", "audit:read"}


@pytest.mark.parametrize("scopes", ["", [], "root", "tasks:submit:", "tasks:submit:A", "tasks:*"])
def test_bad_scopes_are_refused_without_echo(scopes: str | list[str]) -> None:
    """Unknown scopes are refused and the message never repeats the caller's value."""
    with pytest.raises(ClientError) as info:
        validate_scopes(scopes)
    assert info.value.reason == "bad_scope"
    if isinstance(scopes, str) and scopes:
        assert scopes not in str(info.value).split()


def test_too_many_scopes_are_refused() -> None:
    """More than 256 scopes is refused whatever they are."""
    with pytest.raises(ClientError):
        validate_scopes([f"tasks:submit:t{i}" for i in range(257)])


def test_submit_wildcard_covers_every_task_but_nothing_else() -> None:
    """``tasks:submit:*`` allows any task submission, not tasks:read or audit:read."""
    granted = {"tasks:submit:*"}
    assert scope_allows(granted, "tasks:submit:email.send")
    assert not scope_allows(granted, "tasks:read")
    assert not scope_allows(granted, "audit:read")


def test_exact_scopes_allow_only_themselves() -> None:
    """A per-task scope allows that task only."""
    granted = {"tasks:submit:email.send", "tasks:read"}
    assert scope_allows(granted, "tasks:submit:email.send")
    assert scope_allows(granted, "tasks:read")
    assert not scope_allows(granted, "tasks:submit:report.generate")


@pytest.mark.parametrize("needed", ["tasks:submit:*x", "admin", "", "tasks:submit:../x"])
def test_needed_scopes_outside_the_grammar_are_never_allowed(needed: str) -> None:
    """Even a wildcard holder is refused a needed scope that does not parse."""
    assert not scope_allows({"tasks:submit:*", needed}, needed)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("120/minute", "120/minute"), ("10/2 seconds", "10/2 seconds"), ("5 per hour", "5/hour")],
)
def test_rate_limits_come_back_canonical(text: str, canonical: str) -> None:
    """One positive limit is accepted and written in one canonical form."""
    assert check_rate_limit(text) == canonical


@pytest.mark.parametrize(
    "text", ["lots", "0/minute", "1/second;2/minute", "2000000/second", "1/" + "s" * 80, 5]
)
def test_bad_rate_limits_are_refused(text: object) -> None:
    """Unparsable, zero, several, huge or non-string limits are refused."""
    with pytest.raises(ClientError) as info:
        check_rate_limit(text)
    assert info.value.reason == "bad_limit"


@pytest.mark.parametrize("value", [0, -1, 100_001, True, "5", 1.5])
def test_bad_queue_limits_are_refused(value: object) -> None:
    """max_queued is an integer 1..100000; booleans and strings are not integers here."""
    with pytest.raises(ClientError) as info:
        check_max_queued(value)
    assert info.value.reason == "bad_limit"


def test_queue_limit_bounds_are_inclusive() -> None:
    """1 and 100000 are both accepted."""
    assert (check_max_queued(1), check_max_queued(100_000)) == (1, 100_000)
