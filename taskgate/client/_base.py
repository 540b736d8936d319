"""What :class:`~taskgate.client.Client` and :class:`~taskgate.client.AsyncClient` share:
their options, TLS set-up, the flows, the repr (which never shows a secret)."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from taskgate.client._flows import Flows
from taskgate.client.stackfile import StackFileError, StackInfo

__all__ = ["ClientBase", "tls_context"]

PathLike = str | os.PathLike[str]
C = TypeVar("C", bound="ClientBase")


def tls_context(
    ca_file: PathLike | None, client_cert: PathLike | None, client_key: PathLike | None
) -> ssl.SSLContext:
    """Verify the gateway with ``ca_file`` (else the system store); present a client
    certificate when one is given (for a gateway behind a proxy that asks for one)."""
    ctx = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert), None if client_key is None else str(client_key))
    elif client_key is not None:
        raise ValueError("client_key needs client_cert")
    return ctx


class ClientBase:
    """Options shared by both clients.

    Args:
        base_url: the gateway, e.g. ``https://localhost:8443``.
        client_id, client_secret: the API client's credentials (client-credentials grant).
        ca_file: CA bundle that signed the gateway's certificate (default: system store).
        client_cert, client_key: a client certificate to present, if the gateway wants one.
        scope: narrow the token to these space-separated scopes (default: all the client holds).
        timeout: seconds for each HTTP request (connect, read, write, pool).
        retries: how many times a request is repeated after a dropped connection, a 429 or
            a 503 (a submission also after a 409 "still in progress" of its own key).
        max_retry_wait: the longest pause between tries; a longer ``Retry-After`` is not
            waited out, its error is raised.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        *,
        ca_file: PathLike | None = None,
        client_cert: PathLike | None = None,
        client_key: PathLike | None = None,
        scope: str | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        max_retry_wait: float = 30.0,
    ) -> None:
        if not base_url.startswith("https://"):
            raise ValueError("the gateway is served over HTTPS only: base_url must be https://")
        self._flows = Flows(
            base_url,
            client_id,
            client_secret,
            scope=scope,
            retries=retries,
            max_retry_wait=max_retry_wait,
            clock=time.monotonic,
        )
        self._http_options: dict[str, Any] = {
            "verify": tls_context(ca_file, client_cert, client_key),
            "timeout": httpx.Timeout(timeout),
            "follow_redirects": False,
            "headers": {"User-Agent": "taskgate-client"},
        }

    @classmethod
    def from_stack(cls: type[C], state_dir: PathLike | None = None, **options: Any) -> C:
        """A client for the demo client of the local stack `taskgate up` runs, from its
        ``stack.json`` (``state_dir``, else ``TASKGATE_STATE_DIR``, else ``./.taskgate``)."""
        info = StackInfo.load(state_dir)
        if info.demo_client_id is None or info.demo_client_secret is None:
            raise StackFileError(f"{info.state_dir}/stack.json names no demo client")
        options.setdefault("ca_file", info.ca_file)
        return cls(info.gateway_url, info.demo_client_id, info.demo_client_secret, **options)

    @property
    def base_url(self) -> str:
        return self._flows.base_url

    @property
    def client_id(self) -> str:
        return self._flows.client_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, client_id={self.client_id!r})"
