"""Exceptions handed to Celery carry their type's name and nothing of their message."""

from __future__ import annotations

import pickle
import subprocess
import sys

from celery.utils.serialization import get_pickleable_exception

from workers.execution.redaction import RedactedError, redacted


class UpstreamRefused(Exception):
    pass


def test_the_stand_in_keeps_the_type_name_and_drops_the_message() -> None:
    """str() and repr() show only the type's name; the original text is gone."""
    stand_in = redacted(ConnectionError("could not reach secret-host.example"))
    assert type(stand_in).__name__ == "ConnectionError"
    assert isinstance(stand_in, RedactedError)
    assert "secret-host" not in repr(stand_in)
    assert "secret-host" not in str(stand_in)
    assert stand_in.__cause__ is None


def test_celery_stores_the_stand_in_under_the_original_name() -> None:
    """Celery's pickleability check keeps the class, so the result's exc_type is the task's."""
    stand_in = redacted(UpstreamRefused("quoting the payload"))
    assert type(get_pickleable_exception(stand_in)).__name__ == "UpstreamRefused"


def test_a_fresh_process_unpickles_a_stand_in_it_never_made() -> None:
    """billiard's pool pipe unpickles outcomes in the main process: the class is made there."""
    data = pickle.dumps(redacted(UpstreamRefused("x")))
    code = "import pickle,sys; e = pickle.loads(sys.stdin.buffer.read()); print(type(e).__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, check=True, timeout=60
    )
    assert out.stdout.strip() == b"UpstreamRefused"


def test_names_the_module_already_uses_fall_back_to_the_base() -> None:
    """A type named like the module's own attributes never replaces them."""
    redacted_error = type("redacted", (Exception,), {})
    stand_in = redacted(redacted_error("boom"))
    assert type(stand_in) is RedactedError
    assert stand_in.args == ("redacted",)


def test_the_same_name_gives_the_same_class() -> None:
    """Stand-ins are made once per name, so a long-running worker does not grow without end."""
    assert type(redacted(TimeoutError("a"))) is type(redacted(TimeoutError("b")))
