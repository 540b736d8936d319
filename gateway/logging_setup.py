"""The gateway's logs in the shared format (``security.logformat``), with the request id.

uvicorn configures its own loggers (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``)
with handlers of their own that do not propagate; here they lose those handlers and
propagate to the one root handler, so the access log and errors come out in the same
JSON or text as everything else. Every line written while a request is handled carries
its ``request_id`` (``gateway.http.middleware``), the id the worker's events of a task
submitted by that request carry too.
"""

from __future__ import annotations

import logging

from structlog.typing import EventDict, WrappedLogger

from gateway.http.middleware import request_id_var
from security.logformat import configure_logging

__all__ = ["UVICORN_LOGGERS", "add_request_id", "configure_gateway_logging"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def add_request_id(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The id of the request being handled, if any (a context variable: no lookup cost)."""
    request_id = request_id_var.get()
    if request_id != "-":
        event.setdefault("request_id", request_id)
    return event


def configure_gateway_logging(log_format: str, level: str | int = "INFO") -> str:
    """Route uvicorn's loggers and the gateway's own to the shared handler."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return configure_logging(log_format, level, processors=[add_request_id])
