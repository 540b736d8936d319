"""The shared log output: JSON or text, one line per record, exceptions as types only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from security.logformat import configure_logging, resolve_format

CANARY = "canary-7d1f0a"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    """``auto`` follows the stream; explicit values win; anything else is refused."""
    assert resolve_format("auto", _Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("JSON", _Tty()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="log format"):
        resolve_format("xml", io.StringIO())


def test_json_lines_carry_the_fields_and_no_exception_message(restore_logging: None) -> None:
    """A standard-library record and a structlog event both leave as one JSON object; an
    attached exception is its type and frames, never its message."""
    out = io.StringIO()
    assert configure_logging("json", "INFO", stream=out) == "json"
    logging.getLogger("taskgate.test").info("plain %s", "line")
    try:
        raise ValueError(f"bad input {CANARY}")
    except ValueError:
        logging.getLogger("celery.app.trace").exception("failed")
        structlog.get_logger("taskgate.lifecycle").error("task.failed", exc_info=True, attempt=1)
    text = out.getvalue()
    assert CANARY not in text
    first, second, third = (json.loads(line) for line in text.splitlines())
    assert first["event"] == "plain line"
    assert first["logger"] == "taskgate.test"
    assert first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert second["error_type"] == "ValueError"
    assert any(
        frame.endswith(":test_json_lines_carry_the_fields_and_no_exception_message")
        for frame in second["frames"]
    )
    assert third["event"] == "task.failed"
    assert third["attempt"] == 1
    assert third["error_type"] == "ValueError"


def test_text_lines_hold_no_exception_message(restore_logging: None) -> None:
    """The text renderer prints the event and its fields, not the traceback text."""
    out = io.StringIO()
    configure_logging("text", "INFO", stream=out)
    try:
        raise RuntimeError(CANARY)
    except RuntimeError:
        logging.getLogger("taskgate.test.text").exception("boom")
    line = out.getvalue()
    assert "boom" in line
    assert "error_type=RuntimeError" in line
    assert CANARY not in line


class _NoJsonForm:
    def __repr__(self) -> str:
        return "<no json form>"


def test_json_lines_render_values_orjson_refuses(restore_logging: None) -> None:
    """An integer past 64 bits, a non-string key and an object with no JSON form still give
    one parseable line each (the fast serializer hands what it refuses to ``json``)."""
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    logger = structlog.get_logger("taskgate.test")
    logger.info("big", value=2**70)
    logger.info("keys", mapping={1: "one"})
    logger.info("object", thing=_NoJsonForm())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["big", "keys", "object"]
    assert lines[0]["value"] == 2**70
    assert lines[1]["mapping"] == {"1": "one"}
    assert lines[2]["thing"] == "<no json form>"
