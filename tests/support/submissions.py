"""The type of ``make_submission`` (``tests/unit/gateway/conftest.py``), for the tests that
take it: it builds the context the submit route builds for a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.submission.stages import Submission

__all__ = ["MakeSubmission"]

MakeSubmission = Callable[..., Awaitable[Submission]]
