"""uvicorn's access log without query strings.

uvicorn writes ``"GET /path?query HTTP/1.1" 200`` for every request. A query string can hold
a credential a client put there by mistake (``?client_secret=...``) - refused with 400 by
:class:`~gateway.http.middleware.QueryCredentialsMiddleware`, but the access line is written
either way - so the gateway's access log prints the path only.
"""

from __future__ import annotations

import logging
import re

__all__ = ["ACCESS_LOGGER", "StripQueryFilter", "install_access_log_filter"]

ACCESS_LOGGER = "uvicorn.access"
# uvicorn's access record: '%s - "%s %s HTTP/%s" %d' % (client, method, path?query, version, status)
_PATH_ARG = 2
_QUERY = re.compile(r"\?[^\s\"]*")


class StripQueryFilter(logging.Filter):
    """Cut ``?...`` from the path argument of uvicorn's access records (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        path = args[_PATH_ARG] if isinstance(args, tuple) and len(args) > _PATH_ARG else None
        if isinstance(args, tuple) and isinstance(path, str):
            if "?" in path:
                record.args = (*args[:_PATH_ARG], path.split("?", 1)[0], *args[_PATH_ARG + 1 :])
        else:
            # Not the shape we know: fail closed, cut every query from the finished line.
            message = record.getMessage()
            if "?" in message:
                record.msg, record.args = _QUERY.sub("", message), ()
        return True


def install_access_log_filter() -> None:
    """Attach :class:`StripQueryFilter` to uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, StripQueryFilter) for f in logger.filters):
        logger.addFilter(StripQueryFilter())
