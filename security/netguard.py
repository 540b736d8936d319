"""Address policy for outbound requests: the SSRF guard.

Three layers, used in this order by ``workers/safe_fetch.py``:

* :func:`check_url` — syntax only, no DNS: scheme allow-list, no credentials, a strict
  character set (so our parser and the HTTP client's parser cannot disagree), a real
  hostname or an IP literal, and an IP literal must be public.
* :func:`resolve_public` — resolves a hostname and refuses it if *any* answer is not public.
  It is meant to be called at connect time, and the caller connects to the returned
  addresses, never to the name again: a second lookup is what DNS rebinding exploits.
* :func:`is_public_address` — the policy itself.

``allow`` (a sequence of networks) is the escape hatch for tests and for operators who
really mean to reach an internal service; it is never consulted implicitly.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from security.errors import UnsafeURLError

__all__ = [
    "DEFAULT_PORTS",
    "MAX_URL_LENGTH",
    "CheckedURL",
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "check_url",
    "is_allowed_address",
    "is_public_address",
    "resolve_public",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# socket.getaddrinfo-compatible: called as resolver(host, port, family, type).
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

# Refused whatever Python's ``is_global`` says: its tables changed between patch releases,
# and a few of these (multicast, 6to4, the Azure wire server) it calls global.
_BLOCKED_V4 = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT; Alibaba metadata 100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (Oracle metadata 192.0.0.192)
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255 broadcast
        "168.63.129.16/32",  # Azure wire server / metadata: public space, host-internal use
    )
)
_BLOCKED_V6 = tuple(
    IPv6Network(n)
    for n in (
        "::/8",  # unspecified, loopback, IPv4-compatible, other reserved
        "64:ff9b:1::/48",  # local-use NAT64: translates to private space
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: tunnels to an embedded IPv4 address; deprecated (RFC 7526)
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local, incl. fd00:ec2::254 (AWS metadata over IPv6)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")

# RFC 3986 characters only: anything else (space, control chars, backslash, quotes, non-ASCII)
# is where URL parsers disagree, and a disagreement is an SSRF bypass.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# A last label that is a number makes WHATWG parsers and inet_aton read the host as IPv4
# ("127.1", "0x7f.1", "2130706433"), so it is not a hostname we will pass to a resolver.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)")


@dataclass(frozen=True, slots=True)
class CheckedURL:
    """A URL that passed :func:`check_url`: lowercase scheme and host, port filled in."""

    scheme: str
    host: str
    port: int
    url: str
    ip: IPAddress | None  # set when the host is an IP literal


def is_public_address(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address an outbound fetch may reach.

    Refuses loopback, private, link-local, multicast, reserved, unspecified, shared
    (100.64/10), documentation and benchmark ranges, broadcast, cloud metadata addresses,
    scoped IPv6, 6to4 and Teredo; IPv4-mapped and NAT64 (64:ff9b::/96) addresses are judged
    by the IPv4 address they carry.
    """
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            return False
        embedded = ip.ipv4_mapped
        if embedded is None and ip in _NAT64:
            embedded = IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        blocked: tuple[IPNetwork, ...] = _BLOCKED_V6
    else:
        blocked = _BLOCKED_V4
    if any(ip in net for net in blocked):
        return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )


def is_allowed_address(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> bool:
    """True if ``ip`` is public or inside one of the explicitly allowed networks."""
    return any(ip in net for net in allow) or is_public_address(ip)


def resolve_public(
    host: str,
    port: int,
    *,
    resolver: Resolver = socket.getaddrinfo,
    allow: Sequence[IPNetwork] = (),
) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing if ANY of them is not allowed.

    One bad answer refuses the whole name: an attacker who controls DNS can otherwise mix
    a public answer with an internal one and win whenever the client picks the second.
    Connect to the returned addresses, never to ``host`` again. An IP literal is checked
    without calling the resolver. Resolver failures (``socket.gaierror``) propagate as
    ``OSError``, so callers can treat them as transient.
    """
    literal = _parse_ip(host.strip("[]"))
    if literal is not None:
        answers = [literal]
    else:
        answers = []
        for info in resolver(host, port, 0, socket.SOCK_STREAM):
            parsed = _parse_ip(str(info[4][0]))
            if parsed is None:
                raise UnsafeURLError("resolver returned an unusable address", reason="bad_address")
            answers.append(parsed)
    if not answers:
        raise UnsafeURLError("URL host did not resolve to any address", reason="no_address")
    if not all(is_allowed_address(ip, allow) for ip in answers):
        raise UnsafeURLError(
            "URL host resolves to a non-public address", reason="non_public_address"
        )
    return list(dict.fromkeys(str(ip) for ip in answers))


def check_url(
    url: str,
    *,
    schemes: Sequence[str] = ("https",),
    allow: Sequence[IPNetwork] = (),
) -> CheckedURL:
    """Check a URL's syntax and any IP-literal host; no DNS lookup happens here.

    Refuses (``UnsafeURLError``, ``reason`` in brackets): longer than 2048 characters
    (``too_long``), characters outside RFC 3986 or a malformed %-escape (``bad_char``),
    unparsable (``bad_url``), a scheme not in ``schemes`` (``scheme_not_allowed``), any
    userinfo (``credentials``), no host (``no_host``), a host that is neither a DNS name nor
    an IP literal, or looks numeric (``bad_host``), a bad port (``bad_port``), an IP literal
    that is not public and not in ``allow`` (``non_public_address``).
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError("URL is too long", reason="too_long")
    if not _URL_CHARS.fullmatch(url) or _BAD_PERCENT.search(url):
        raise UnsafeURLError("URL contains a character that is not allowed", reason="bad_char")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        raise UnsafeURLError("URL cannot be parsed", reason="bad_url") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes or scheme not in DEFAULT_PORTS:
        raise UnsafeURLError("URL scheme is not allowed", reason="scheme_not_allowed")
    if "@" in parts.netloc:
        raise UnsafeURLError("URL must not contain credentials", reason="credentials")
    host = parts.hostname or ""
    if not host:
        raise UnsafeURLError("URL has no host", reason="no_host")
    ip = _check_host(host, bracketed=parts.netloc.startswith("["))
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        raise UnsafeURLError("URL port is not valid", reason="bad_port")
    if ip is not None and not is_allowed_address(ip, allow):
        raise UnsafeURLError("URL host is a non-public address", reason="non_public_address")
    netloc = f"[{host}]" if ip is not None and ip.version == 6 else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    normalised = urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))
    return CheckedURL(
        scheme=scheme,
        host=host,
        port=DEFAULT_PORTS[scheme] if port is None else port,
        url=normalised,
        ip=ip,
    )


def _check_host(host: str, *, bracketed: bool) -> IPAddress | None:
    """Return the IP of a literal host, None for a valid hostname; raise otherwise."""
    if bracketed:
        ip = _parse_ip(host)
        if ip is None or ip.version != 6 or "%" in host:
            raise UnsafeURLError("URL host is not valid", reason="bad_host")
        return ip
    ip = _parse_ip(host)
    if ip is not None:
        return ip
    labels = host.rstrip(".").split(".")
    if (
        len(host.rstrip(".")) > 253
        or not _HOSTNAME.fullmatch(host)
        or _NUMERIC_LABEL.fullmatch(labels[-1])
    ):
        raise UnsafeURLError("URL host is not valid", reason="bad_host")
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
