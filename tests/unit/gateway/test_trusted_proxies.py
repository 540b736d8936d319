"""The trusted-proxy list: a list that trusts everyone is refused in every spelling."""

from __future__ import annotations

import pytest

from gateway.settings import _check_networks, _check_proxies
from security.errors import ConfigError


@pytest.mark.parametrize(
    "proxies",
    [
        ["*"],
        ["0.0.0.0/0"],
        ["0.0.0.0/0.0.0.0"],
        [" 0.0.0.0/0 "],
        ["::/0"],
        ["::/::"],
        ["::ffff:0:0/96"],
        ["0.0.0.0/1", "128.0.0.0/1"],
        ["10.0.0.1", "0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"],
        ["::/1", "8000::/1"],
    ],
)
def test_lists_that_cover_every_address_are_refused(proxies: list[str]) -> None:
    """Any spelling that adds up to a whole address family names the setting and the fix."""
    with pytest.raises(ConfigError) as err:
        _check_proxies(proxies)
    assert err.value.setting == "TASKGATE_TRUSTED_PROXIES"
    assert "anyone" in str(err.value) or "not an address" in str(err.value)


@pytest.mark.parametrize("bad", ["proxy.internal", "10.0.0.0/33", "1.2.3"])
def test_entries_that_are_not_networks_are_refused(bad: str) -> None:
    """A name or malformed network is refused at start-up rather than ignored at request time."""
    with pytest.raises(ConfigError, match="not an address or network"):
        _check_proxies([bad])


@pytest.mark.parametrize(
    "proxies",
    [[], [""], ["10.0.0.0/8"], ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"], ["127.0.0.1", "::1"]],
)
def test_ordinary_proxy_lists_are_accepted(proxies: list[str]) -> None:
    """Load balancer addresses and private networks are what the list is for."""
    _check_proxies(proxies)


def test_a_malformed_metrics_allow_entry_is_refused_naming_the_setting() -> None:
    """TASKGATE_METRICS_ALLOW takes addresses and networks only."""
    with pytest.raises(ConfigError) as err:
        _check_networks(["10.0.0.0/8", "scraper.internal"], "TASKGATE_METRICS_ALLOW")
    assert err.value.setting == "TASKGATE_METRICS_ALLOW"
    _check_networks(["10.0.0.0/8", "", "::1"], "TASKGATE_METRICS_ALLOW")
