"""What a Sentry error report may carry: the shape of the failure, never a value.

Framework-free (sentry-sdk is imported only by ``gateway.sentry_setup`` and
``workers.sentry_setup``, and only when ``TASKGATE_SENTRY_DSN`` is set): the client options
both use, the DSN check, and the ``before_send``/``before_breadcrumb`` hooks.

An event keeps exception *types*, stack frames (file, line, function, source lines of
the code - no local variables), tags, the transaction (a route template or a task name),
the level, the logger and a log record's format string. It loses exception messages,
log-record arguments and formatted messages, request bodies, headers, cookies and query
strings, ``extra`` (where the Celery integration puts task arguments), user data,
breadcrumb data, and any message not written by taskgate's own loggers.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from security.errors import ConfigError

__all__ = [
    "LOOPBACK_HOSTS",
    "check_dsn",
    "client_options",
    "scrub_breadcrumb",
    "scrub_event",
]

LOOPBACK_HOSTS = frozenset({"localhost"})
_OWN_LOGGERS = ("taskgate",)
_CONTEXTS = frozenset({"trace", "runtime", "os", "device"})
_REQUEST_KEEP = frozenset({"method"})
_DROP = ("extra", "user", "spans", "message", "breadcrumbs_extra")


def check_dsn(dsn: str, *, setting: str) -> str:
    """Refuse a DSN that would send reports in clear text over the network.

    ``https://`` only - except ``http://`` to a loopback address (``127.0.0.1``, ``::1``,
    ``localhost``): nothing then leaves the machine. That exception exists for a local
    relay and for the tests, which stand a plain HTTP server in for Sentry's ingest.
    """
    try:
        parts = urlsplit(dsn.strip())
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(setting, "is not a URL", "copy the DSN from Sentry") from None
    if not parts.username or not host or not parts.path.strip("/"):
        raise ConfigError(setting, "is not a Sentry DSN", "copy the DSN from Sentry")
    if parts.scheme == "https":
        return dsn.strip()
    if parts.scheme == "http" and _is_loopback(host):
        return dsn.strip()
    raise ConfigError(
        setting,
        "would send error reports without TLS",
        "use an https:// DSN (http:// is accepted for a loopback address only)",
    )


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_options(dsn: str) -> dict[str, Any]:
    """``sentry_sdk.init`` options shared by the gateway and the workers (sentry-sdk 3)."""
    return {
        "dsn": dsn,
        # No user data, cookies, headers, query strings or bodies; no frame variables
        # (they hold the payload and resolved secrets); no queue message data (task
        # arguments); no database query data.
        "data_collection": {
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "graphql": {"document": False, "variables": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        "traces_sample_rate": None,  # errors only: no spans, no trace headers
        "attach_stacktrace": False,
        "before_send": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        "send_client_reports": False,
    }


def scrub_event(event: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """``before_send``: strip every payload-derived string from an error event."""
    for key in _DROP:
        event.pop(key, None)
    for holder in ("exception", "threads"):
        for value in (event.get(holder) or {}).get("values") or []:
            if holder == "exception":
                value["value"] = ""
                mechanism = value.get("mechanism")
                if isinstance(mechanism, dict):
                    mechanism.pop("data", None)
            for frame in (value.get("stacktrace") or {}).get("frames") or []:
                frame.pop("vars", None)
    transaction = event.get("transaction")
    if isinstance(transaction, str):
        event["transaction"] = transaction.split("?", 1)[0]
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        template = logentry.get("message")
        event["logentry"] = {"message": template if isinstance(template, str) else ""}
    request = event.get("request")
    if isinstance(request, dict):
        kept = {k: v for k, v in request.items() if k in _REQUEST_KEEP}
        url = request.get("url")
        if isinstance(url, str):
            kept["url"] = url.split("?", 1)[0]
        event["request"] = kept
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        event["contexts"] = {k: v for k, v in contexts.items() if k in _CONTEXTS}
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        crumbs["values"] = [scrub_breadcrumb(c) for c in crumbs.get("values") or []]
    return event


def scrub_breadcrumb(crumb: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """``before_breadcrumb``: no data; a message only from taskgate's own loggers."""
    crumb.pop("data", None)
    category = str(crumb.get("category") or "")
    if not category.startswith(_OWN_LOGGERS):
        crumb.pop("message", None)
    return crumb
