"""The client's IP: the socket peer, unless the peer is a configured trusted proxy.

``X-Forwarded-For`` is client-controlled (slowapi #255, #306); it is read only when the
direct peer is inside ``TASKGATE_TRUSTED_PROXIES``, and then the rightmost address that is
not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from starlette.requests import Request

__all__ = ["client_ip", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(request: Request, trusted: tuple[str, ...] = ()) -> str:
    """The address rate limits key on."""
    peer = request.client.host if request.client else "unknown"
    networks = parse_networks(trusted)
    if not networks or not _trusted(peer, networks):
        return peer
    # Every X-Forwarded-For line, in order: a proxy may append its own line rather than
    # extend the client's, and the client's (forgeable) line comes first.
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer
