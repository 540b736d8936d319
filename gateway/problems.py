"""RFC 9457 problem details: the only shape an error leaves the gateway in."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["PROBLEM_JSON", "PROBLEM_TYPE_BASE", "problem"]

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://taskgate.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response. ``detail`` must never carry a secret or payload value."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
