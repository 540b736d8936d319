"""Client-IP resolution (``gateway.http.clientip``): the address per-IP limits and refusal
summaries key on. ``X-Forwarded-For`` counts only from a trusted proxy, and then only its
rightmost hop that is not itself a trusted proxy: whatever a client writes to the left
of that is ignored."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.http.clientip import client_ip, parse_networks

PROXIES = ("10.0.0.0/8", "fd00::/8")


def _request(peer: str | None, *forwarded: str) -> Request:
    """A request from socket peer ``peer`` with one X-Forwarded-For line per ``forwarded``."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-forwarded-for", line.encode()) for line in forwarded],
        "client": None if peer is None else (peer, 50000),
    }
    return Request(scope)


def test_without_a_trusted_list_the_socket_peer_is_the_client() -> None:
    """No proxies configured: a forwarded header is the client's own claim and is ignored."""
    assert client_ip(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_a_peer_outside_the_trusted_list_cannot_name_another_address() -> None:
    """A client connecting directly cannot pick its rate-limit key with the header."""
    assert client_ip(_request("203.0.113.9", "198.51.100.1"), PROXIES) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client() -> None:
    """From a trusted peer, the forwarded address is the client."""
    assert client_ip(_request("10.0.0.2", "198.51.100.1"), PROXIES) == "198.51.100.1"


def test_a_trusted_proxy_without_the_header_is_the_client() -> None:
    """No header (a health check from the proxy itself): the proxy's own address."""
    assert client_ip(_request("10.0.0.2"), PROXIES) == "10.0.0.2"


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),  # a spoofed hop to the left is ignored
        ("198.51.100.1, 10.0.0.3, 10.0.0.4", "198.51.100.1"),  # trusted hops are skipped
        ("10.0.0.9, 198.51.100.1", "198.51.100.1"),  # a claimed proxy hop left of it too
        ("6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"),
        (" , 198.51.100.1 ,, ", "198.51.100.1"),  # empty elements are not hops
        ("not-an-ip, 198.51.100.1", "198.51.100.1"),  # garbage left of the client is moot
    ],
)
def test_the_rightmost_untrusted_hop_of_a_chain_is_the_client(chain: str, client: str) -> None:
    """Only hops appended by trusted proxies are believed; the first other one is the client."""
    assert client_ip(_request("10.0.0.2", chain), PROXIES) == client


def test_a_chain_of_trusted_proxies_only_resolves_to_the_peer() -> None:
    """Every hop is a proxy: there is no client address to believe, so the peer it is."""
    assert client_ip(_request("10.0.0.2", "10.0.0.3, 10.0.0.4"), PROXIES) == "10.0.0.2"


@pytest.mark.parametrize(
    "hop",
    ["not-an-ip", "198.51.100.1:4711", "[2001:db8::1]:443", "999.1.1.1", "unknown", "1.2.3"],
)
def test_a_malformed_client_hop_falls_back_to_the_peer(hop: str) -> None:
    """A value that is not a bare address is never used as a key, nor is anything left of
    it: the proxy's address is (one bucket for all such requests, never one per value)."""
    assert client_ip(_request("10.0.0.2", f"198.51.100.7, {hop}"), PROXIES) == "10.0.0.2"


def test_ipv6_addresses_resolve_in_canonical_form() -> None:
    """An IPv6 proxy is matched by network; the client's spelling is normalised, so one
    address cannot get several rate-limit keys by writing it differently."""
    spelled = "2001:DB8:0:0:0:0:0:1"
    assert client_ip(_request("fd00::2", spelled), PROXIES) == "2001:db8::1"
    assert client_ip(_request("fd00::2", "2001:db8::1"), PROXIES) == "2001:db8::1"


def test_an_ipv6_peer_outside_the_list_is_the_client() -> None:
    """An IPv6 peer not in the list is taken as it is, header ignored."""
    assert client_ip(_request("2001:db8::5", "198.51.100.1"), PROXIES) == "2001:db8::5"


def test_an_ipv4_proxy_list_does_not_trust_an_ipv6_peer() -> None:
    """Address families do not mix: ::ffff:10.0.0.2 is not inside 10.0.0.0/8 as configured,
    so its header is ignored (fail closed)."""
    assert client_ip(_request("::ffff:10.0.0.2", "198.51.100.1"), ("10.0.0.0/8",)) == (
        "::ffff:10.0.0.2"
    )


def test_a_request_without_a_peer_is_keyed_as_unknown() -> None:
    """No socket peer (an in-process transport): one shared key, header ignored."""
    assert client_ip(_request(None, "198.51.100.1"), PROXIES) == "unknown"


def test_a_peer_that_is_not_an_address_is_never_trusted() -> None:
    """A peer name (a Unix socket path) is not in any network: its header is ignored."""
    assert client_ip(_request("gateway.sock", "198.51.100.1"), PROXIES) == "gateway.sock"


def test_a_client_sent_header_line_cannot_outrank_the_proxys_own_line() -> None:
    """Several X-Forwarded-For lines are one list (RFC 9110 section 5.3): the client's
    forged first line is the left of the chain, the proxy's appended line its right."""
    request = _request("10.0.0.2", "6.6.6.6", "198.51.100.1")
    assert client_ip(request, PROXIES) == "198.51.100.1"


def test_parse_networks_skips_blank_entries_and_trims_spaces() -> None:
    """Blank entries (an empty environment list item) trust nothing; spaces are trimmed."""
    networks = parse_networks((" 10.0.0.0/8 ", "", "  ", "fd00::1"))
    assert [str(n) for n in networks] == ["10.0.0.0/8", "fd00::1/128"]
    assert parse_networks(("", " ")) == ()
    assert client_ip(_request("10.0.0.2", "198.51.100.1"), ("", " ")) == "10.0.0.2"
