"""One log output for every taskgate process: JSON lines or plain text, via structlog.

``TASKGATE_LOG_FORMAT`` chooses ``json`` (one object per line, for a log shipper) or
``text`` (for a person at a terminal); ``auto``, the default, is text when stderr is a
terminal and JSON otherwise. Every record goes through the same chain, whether it was
written with structlog (the task lifecycle events) or the standard ``logging`` module
(Celery, uvicorn, taskgate's own loggers), and leaves as one line with ``timestamp``,
``level``, ``logger`` and ``event``.

An exception attached to a record is reduced to its type (``error_type``) and the frames
it passed through (file, line, function): never its message and never a frame's local
variables, either of which can quote a payload or a secret.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LOG_FORMATS",
    "LogFormat",
    "configure_logging",
    "exception_type_only",
    "resolve_format",
]

LogFormat = Literal["json", "text", "auto"]
LOG_FORMATS: tuple[str, ...] = ("json", "text", "auto")
_HANDLER_NAME = "taskgate"
_MAX_FRAMES = 30


def resolve_format(setting: str, stream: TextIO | None = None) -> Literal["json", "text"]:
    """``json`` or ``text`` for a ``TASKGATE_LOG_FORMAT`` value (``auto``: text on a terminal)."""
    chosen = setting.strip().lower()
    if chosen in {"json", "text"}:
        return "json" if chosen == "json" else "text"
    if chosen != "auto":
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    out = sys.stderr if stream is None else stream
    isatty = getattr(out, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def exception_type_only(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Replace ``exc_info`` by the exception's type name and its frames (no message, no
    locals). Runs before any renderer, so nothing downstream sees the exception itself."""
    exc_info = event.pop("exc_info", None)
    if exc_info is None or exc_info is False:
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        event["error_type"] = exc_info[0].__name__
        frames = traceback.extract_tb(exc_info[2], limit=_MAX_FRAMES)
        event["frames"] = [f"{f.filename}:{f.lineno}:{f.name}" for f in frames]
    event.pop("stack_info", None)
    return event


def _processors(extra: Iterable[Processor]) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *extra,
        exception_type_only,
    ]


def configure_logging(
    log_format: str,
    level: str | int = "INFO",
    *,
    processors: Iterable[Processor] = (),
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
) -> Literal["json", "text"]:
    """Send every record of this process, structlog's and the standard library's, through
    one handler on the root logger that renders ``log_format``; returns the format used.

    ``processors`` run on every record (e.g. the gateway adds the request id), ``filters``
    sit on the handler (they see records from every logger). Handlers
    that others put on the root logger are replaced, so no record leaves unrendered.
    """
    chosen = resolve_format(log_format, stream)
    extra = list(processors)
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_no_exceptions)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_processors(extra),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    for one in filters:
        handler.addFilter(one)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.captureWarnings(True)  # warnings too, as records of ``py.warnings``
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_processors(extra),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return chosen


def _no_exceptions(_sio: TextIO, _exc_info: Any) -> None:
    """The text renderer's exception hook: nothing (``exception_type_only`` ran first)."""
