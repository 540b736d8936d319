"""Helpers for the outbound address policy's tests (security.netguard).

A loopback allow-list, stand-in resolvers, and the reason a URL or an address was refused.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from ipaddress import ip_network
from typing import Any

import pytest

from security.errors import UnsafeURLError

LOOPBACK = [ip_network("127.0.0.0/8")]


def fake_resolver(*answers: str) -> Callable[..., list[tuple[Any, ...]]]:
    """A getaddrinfo stand-in that answers every name with ``answers``."""

    def resolve(host: str, port: int, family: int = 0, type: int = 0) -> list[tuple[Any, ...]]:
        infos: list[tuple[Any, ...]] = []
        for answer in answers:
            if ":" in answer:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (answer, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port)))
        return infos

    return resolve


def no_resolver(*_args: object) -> Sequence[tuple[Any, ...]]:
    """A resolver that must not be called."""
    raise AssertionError("resolver called for an IP literal")


def reason_of(call: Callable[[], object]) -> str:
    """The reason of the ``UnsafeURLError`` that ``call`` raises."""
    with pytest.raises(UnsafeURLError) as info:
        call()
    return info.value.reason
