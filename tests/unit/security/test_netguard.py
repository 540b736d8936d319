"""Tests for security.netguard's address policy (SSRF guard).

Which addresses count as public, the allow-list, and what ``resolve_public`` admits of a
name's answers.
"""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import Any

import pytest

from security.errors import InputRejectedError, UnsafeURLError
from security.netguard import is_allowed_address, is_public_address, resolve_public
from tests.support.outbound import LOOPBACK, fake_resolver, no_resolver, reason_of

# --- is_public_address ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"],
)
def test_public_unicast_addresses_are_public(address: str) -> None:
    """Ordinary globally routable unicast addresses are allowed."""
    assert is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "127.255.255.254", "::1"])
def test_loopback_is_not_public(address: str) -> None:
    """Loopback addresses are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12::1"]
)
def test_private_is_not_public(address: str) -> None:
    """RFC 1918 and IPv6 unique-local addresses are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["169.254.1.1", "fe80::1", "fec0::1"])
def test_link_local_and_site_local_are_not_public(address: str) -> None:
    """Link-local (and deprecated site-local) addresses are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"]
)
def test_cloud_metadata_addresses_are_not_public(address: str) -> None:
    """AWS/GCP/Azure/Alibaba metadata endpoints (v4 and v6) are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1"])
def test_multicast_is_not_public(address: str) -> None:
    """Multicast is refused, although Python calls some of it global."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",  # noqa: S104 - an address under test; nothing binds to it
        "0.1.2.3",
        "::",
        "255.255.255.255",
        "240.0.0.1",
        "100::1",
    ],
)
def test_unspecified_this_network_broadcast_reserved_are_not_public(address: str) -> None:
    """0.0.0.0/8, ::, broadcast, 240/4 and the IPv6 discard prefix are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["100.64.0.1", "100.127.255.254"])
def test_shared_address_space_is_not_public(address: str) -> None:
    """Carrier-grade NAT space 100.64/10 is refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.192",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "192.88.99.1",
        "2001:db8::1",
        "3fff::1",
        "5f00::1",
        "2001:2::1",
    ],
)
def test_special_purpose_ranges_are_not_public(address: str) -> None:
    """Documentation, benchmarking, IETF-assignment and relay ranges are refused."""
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0"],
)
def test_ipv4_mapped_forms_of_internal_addresses_are_not_public(address: str) -> None:
    """An IPv4-mapped IPv6 address is judged by the IPv4 address inside it."""
    assert not is_public_address(ip_address(address))


def test_ipv4_mapped_form_of_public_address_is_public() -> None:
    """::ffff:8.8.8.8 is as public as 8.8.8.8."""
    assert is_public_address(ip_address("::ffff:8.8.8.8"))


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1"])
def test_nat64_forms_of_internal_addresses_are_not_public(address: str) -> None:
    """A NAT64 (64:ff9b::/96) address is judged by the IPv4 address inside it."""
    assert not is_public_address(ip_address(address))


def test_nat64_form_of_public_address_is_public() -> None:
    """DNS64 answers for public IPv4 hosts stay reachable on IPv6-only networks."""
    assert is_public_address(ip_address("64:ff9b::808:808"))


def test_local_use_nat64_prefix_is_not_public() -> None:
    """64:ff9b:1::/48 translates into private space and is refused."""
    assert not is_public_address(ip_address("64:ff9b:1::a00:1"))


@pytest.mark.parametrize("address", ["2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:808:808::1"])
def test_6to4_addresses_are_not_public(address: str) -> None:
    """6to4 (2002::/16) tunnels to an embedded IPv4 address and is refused outright."""
    assert not is_public_address(ip_address(address))


def test_teredo_addresses_are_not_public() -> None:
    """Teredo (2001::/32) carries an obfuscated IPv4 client address and is refused."""
    assert not is_public_address(ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))


@pytest.mark.parametrize("address", ["fe80::1%eth0", "2606:4700::1111%eth0"])
def test_scoped_ipv6_is_not_public(address: str) -> None:
    """An address carrying an interface scope is never treated as public."""
    assert not is_public_address(ip_address(address))


def test_allow_list_admits_an_internal_address() -> None:
    """is_allowed_address lets an explicitly allowed network through."""
    assert is_allowed_address(ip_address("127.0.0.1"), LOOPBACK)
    assert is_allowed_address(ip_address("8.8.8.8"), LOOPBACK)
    assert not is_allowed_address(ip_address("10.0.0.1"), LOOPBACK)


# --- resolve_public ---------------------------------------------------------------------


def test_resolve_public_returns_unique_public_addresses() -> None:
    """All-public answers come back as strings, deduplicated, in resolver order."""
    resolver = fake_resolver("93.184.216.34", "2606:2800:220:1::1", "93.184.216.34")
    assert resolve_public("example.com", 443, resolver=resolver) == [
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
def test_resolve_public_refuses_internal_answer(answer: str) -> None:
    """A name resolving to an internal address is refused."""
    resolver = fake_resolver(answer)
    assert reason_of(lambda: resolve_public("evil.test", 443, resolver=resolver)) == (
        "non_public_address"
    )


def test_resolve_public_refuses_when_any_answer_is_internal() -> None:
    """One internal answer among public ones refuses the whole name."""
    resolver = fake_resolver("93.184.216.34", "127.0.0.1")
    assert reason_of(lambda: resolve_public("evil.test", 443, resolver=resolver)) == (
        "non_public_address"
    )


def test_resolve_public_refusal_does_not_echo_host() -> None:
    """The error message names no host or address."""
    resolver = fake_resolver("127.0.0.1")
    with pytest.raises(UnsafeURLError) as info:
        resolve_public("secret-host.test", 443, resolver=resolver)
    assert "secret-host" not in str(info.value)
    assert "127.0.0.1" not in str(info.value)
    assert isinstance(info.value, InputRejectedError)


def test_resolve_public_allow_list_admits_internal_answer() -> None:
    """An answer inside ``allow`` is accepted."""
    resolver = fake_resolver("127.0.0.1")
    assert resolve_public("svc.test", 443, resolver=resolver, allow=LOOPBACK) == ["127.0.0.1"]


def test_resolve_public_checks_ip_literal_without_resolver() -> None:
    """An IP literal host is judged directly; the resolver is not consulted."""
    assert resolve_public("8.8.8.8", 443, resolver=no_resolver) == ["8.8.8.8"]
    assert resolve_public("[2606:4700::1111]", 443, resolver=no_resolver) == ["2606:4700::1111"]
    assert reason_of(lambda: resolve_public("127.0.0.1", 443, resolver=no_resolver)) == (
        "non_public_address"
    )


def test_resolve_public_refuses_empty_answer() -> None:
    """A resolver returning nothing is refused as no_address."""
    resolver = fake_resolver()
    assert reason_of(lambda: resolve_public("x.test", 443, resolver=resolver)) == "no_address"


def test_resolve_public_refuses_unparsable_answer() -> None:
    """A resolver answer that is not an IP address is refused as bad_address."""
    resolver = fake_resolver("not-an-ip")
    assert reason_of(lambda: resolve_public("x.test", 443, resolver=resolver)) == "bad_address"


def test_resolve_public_refuses_scoped_ipv6_answer() -> None:
    """A link-local answer with a zone id is refused."""
    resolver = fake_resolver("fe80::1%eth0")
    assert reason_of(lambda: resolve_public("x.test", 443, resolver=resolver)) == (
        "non_public_address"
    )


def test_resolve_public_lets_resolver_errors_propagate() -> None:
    """A DNS failure stays an OSError so callers can retry it."""

    def failing(*_args: object) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(OSError, match="not known"):
        resolve_public("x.test", 443, resolver=failing)


def test_resolve_public_asks_for_stream_sockets() -> None:
    """The resolver is called as getaddrinfo(host, port, 0, SOCK_STREAM)."""
    calls: list[tuple[object, ...]] = []

    def recording(*args: object) -> list[tuple[Any, ...]]:
        calls.append(args)
        return fake_resolver("8.8.8.8")(*args)

    resolve_public("dns.test", 8443, resolver=recording)
    assert calls == [("dns.test", 8443, 0, socket.SOCK_STREAM)]
