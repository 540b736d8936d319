"""Jinja2 pages with a strict Content-Security-Policy (no inline script or style at all).

Templates autoescape everything; the only assets are the gateway's own (``static/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

from security.audit.times import iso_time

__all__ = ["CSP", "HEADERS", "STATIC_DIR", "age", "page", "redirect"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
# Nothing inline, nothing from elsewhere: styles and images from the gateway only, no
# script at all, forms post only back to it, never framed.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def age(seconds: float | None) -> str:
    """A duration for people: 42 s, 7 min, 3 h, 2 d."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} s"


def _iso(value: Any) -> str:
    try:
        return iso_time(float(value)) if value not in (None, "") else "-"
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


_env.filters["iso"] = _iso
_env.filters["age"] = age


# same-origin, not no-referrer: browsers send "Origin: null" on a form post from a page
# with no-referrer, and the CSRF check compares Origin with the console's own.
HEADERS = {"content-security-policy": CSP, "referrer-policy": "same-origin"}


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``templates/<name>.html`` with the console's CSP."""
    html = _env.get_template(f"{name}.html").render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def redirect(url: str) -> RedirectResponse:
    """303 See Other (after a form post, the browser GETs ``url``)."""
    return RedirectResponse(url, status_code=303, headers=HEADERS)
