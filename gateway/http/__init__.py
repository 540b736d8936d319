"""The gateway's HTTP edge: pure ASGI middleware, the submission fast lane, the
problem+json error mapping, the client's IP, header limits and the access log.

Modules:

* :mod:`gateway.http.accesslog`: uvicorn's access log without query strings.
* :mod:`gateway.http.clientip`: The client's IP: the socket peer, unless the peer is a
  configured trusted proxy.
* :mod:`gateway.http.errors`: One table from error type to how the gateway answers, logs, audits
  and counts it.
* :mod:`gateway.http.fastlane`: The submission routes, answered without FastAPI's per-request
  machinery.
* :mod:`gateway.http.field_errors`: What a 422 says about each invalid field: its path, the
  error kind and a fixed message.
* :mod:`gateway.http.header_guard`: Limits on a request's head, enforced where uvicorn reads the
  socket.
* :mod:`gateway.http.middleware`: Transport concerns as pure ASGI middleware, declared in one
  list, outermost first.
* :mod:`gateway.http.problems`: RFC 9457 problem details: the only shape an error leaves the
  gateway in.
"""

from __future__ import annotations

__all__ = [
    "accesslog",
    "clientip",
    "errors",
    "fastlane",
    "field_errors",
    "header_guard",
    "middleware",
    "problems",
]
