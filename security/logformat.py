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

import json
import logging
import sys
import traceback
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LOG_FORMATS",
    "LogFormat",
    "configure_logging",
    "exception_type_only",
    "get_logger",
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


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's line writer with the name it was asked for (``structlog.get_logger(name)``),
    which ``add_logger_name`` reads as from a standard library logger."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "root")


def _dumps(event: Any, **kw: Any) -> str:
    """structlog's JSON serializer: orjson (about 3x json.dumps here, which builds an encoder
    per call when given ``default``); what orjson refuses (an int over 64 bits, say) goes to
    ``json.dumps`` with the same fallback for objects it cannot encode."""
    default = kw.get("default")
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(event, **kw)


def _processors(extra: Iterable[Processor], *, native: bool = False) -> list[Processor]:
    """The fields every line carries; ``native``: for structlog's own loggers, which are
    not the standard library's."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level if native else structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _TIMESTAMP,
        *extra,
        exception_type_only,
    ]


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


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
        structlog.processors.JSONRenderer(serializer=_dumps)
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
    # structlog's own events (the task lifecycle) are rendered here and written straight to
    # the stream: the same chain and renderer as the standard library's records, without a
    # LogRecord and a handler per event (about half the cost of an event on a worker).
    # Not cached, so a later call (Celery's set-up, a test) takes effect for every logger.
    structlog.configure(
        processors=[*_processors(extra, native=True), renderer],
        logger_factory=_NamedWriteLoggerFactory(sys.stderr if stream is None else stream),
        wrapper_class=structlog.make_filtering_bound_logger(root.level),
        cache_logger_on_first_use=False,
    )
    _loggers.clear()
    return chosen


_loggers: dict[str, Any] = {}


def get_logger(name: str) -> Any:
    """structlog's logger ``name``, built once per :func:`configure_logging` (a hot path's
    event then costs no logger construction)."""
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers[name] = structlog.get_logger(name).bind()
    return logger


def _no_exceptions(_sio: TextIO, _exc_info: Any) -> None:
    """The text renderer's exception hook: nothing (``exception_type_only`` ran first)."""
