"""Error reports to Sentry from a worker, when ``TASKGATE_SENTRY_DSN`` is set.

sentry-sdk (the optional extra ``taskgate[sentry]``) is imported here, inside
:func:`init_sentry`, and only when a DSN is configured: without one it is never loaded.
A failed task reaches Sentry as Celery reports it: the redacted stand-in exception
(``workers.execution.redaction``: the original type's name, no message); ``security.sentry_scrub``
removes whatever else could carry a value. A run stopped at its hard time limit is
reported from the main process (:func:`report_time_limit`).
"""

from __future__ import annotations

import sys

from celery.exceptions import TimeLimitExceeded

from security.errors import ConfigError
from security.sentry_scrub import client_options

__all__ = ["init_sentry", "report_time_limit"]


def init_sentry(dsn: str | None) -> bool:
    """Start reporting this worker's errors (Celery integration, no trace headers on
    messages); False, importing nothing, without a DSN. Called in the main process
    before the pool forks: sentry-sdk restarts its sending thread in each child."""
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
    except ImportError:
        raise ConfigError(
            "TASKGATE_SENTRY_DSN",
            "is set but sentry-sdk is not installed",
            "pip install 'taskgate[sentry]'",
        ) from None
    sentry_sdk.init(
        **client_options(dsn),
        integrations=[CeleryIntegration(propagate_traces=False)],
    )
    return True


def report_time_limit(task_name: str, limit: float | None) -> None:
    """Report a run stopped at its hard time limit (decided in the worker's main process,
    where no exception reaches the Celery integration): one error event named for the task,
    of type ``TimeLimitExceeded``, with nothing from the run in it. Nothing without Sentry."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None or not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_transaction_name(task_name)
        scope.set_tag("celery_task_name", task_name)
        sentry_sdk.capture_exception(TimeLimitExceeded(limit))
