"""Error reports to Sentry from the gateway, when ``TASKGATE_SENTRY_DSN`` is set.

sentry-sdk (the optional extra ``taskgate[sentry]``) is imported here, inside
:func:`init_sentry`, and only when a DSN is configured: without one it is never loaded.
What a report may carry is decided in ``security.sentry_scrub``.
"""

from __future__ import annotations

from security.errors import ConfigError
from security.sentry_scrub import client_options

__all__ = ["init_sentry"]


def init_sentry(dsn: str | None) -> bool:
    """Start reporting the gateway's errors (FastAPI and Starlette integrations); False,
    importing nothing, without a DSN."""
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration
    except ImportError:
        raise ConfigError(
            "TASKGATE_SENTRY_DSN",
            "is set but sentry-sdk is not installed",
            "pip install 'taskgate[sentry]'",
        ) from None
    sentry_sdk.init(
        **client_options(dsn),
        integrations=[StarletteIntegration(), FastApiIntegration()],
    )
    return True
