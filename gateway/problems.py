"""RFC 9457 problem details: the only shape an error leaves the gateway in."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from gateway.schemas import Problem

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_TYPE_BASE",
    "document_problem_schema",
    "document_transport_problems",
    "problem",
]

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


def document_transport_problems(doc: dict[str, Any]) -> None:
    """Declare, in an OpenAPI ``doc``, the problems the transport layer adds to any route.

    Routes list their own answers; these come from outside the handler: the body cap
    (413) and an unparseable body (400) on every operation that takes a body, a credential
    in the query string (400) on every operation, and 404 on every operation whose path
    names something (an id that names nothing).
    """
    content: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "Malformed request", **content})
                responses.setdefault("413", {"description": "Body over the cap", **content})
            responses.setdefault(
                "400", {"description": "A credential in the query string", **content}
            )
            if "{" in path:
                responses.setdefault("404", {"description": "Nothing by that name", **content})


def document_problem_schema(doc: dict[str, Any]) -> None:
    """Give every problem+json answer in ``doc`` the named ``Problem`` schema."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    ref = {"$ref": "#/components/schemas/Problem"}
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get(PROBLEM_JSON)
                if isinstance(media, dict) and not media.get("schema"):
                    media["schema"] = dict(ref)
