"""taskgate's Python SDK: submit tasks to a taskgate gateway and follow them.

>>> from taskgate.client import Client
>>> with Client("https://gateway:8443", "billing-1a2b3c4d", secret, ca_file="ca.pem") as tg:
...     accepted = tg.submit("report.generate", {"title": "Q3", "columns": [], "rows": []})
...     task = tg.wait(accepted.id, timeout=60)  # doctest: +SKIP

See ``docs/sdk.md``.
"""

from __future__ import annotations

from taskgate.client.aio import AsyncClient
from taskgate.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    FieldError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TaskgateClientError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from taskgate.client.models import (
    FINAL_STATUSES,
    Accepted,
    CatalogEntry,
    Task,
    TaskError,
    TaskPage,
)
from taskgate.client.stackfile import StackFileError, StackInfo, find_state_dir
from taskgate.client.sync import Client

__all__ = [
    "FINAL_STATUSES",
    "Accepted",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "CatalogEntry",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "FieldError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "StackFileError",
    "StackInfo",
    "Task",
    "TaskError",
    "TaskPage",
    "TaskgateClientError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
    "find_state_dir",
]
