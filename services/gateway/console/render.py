"""Templates, static files and the headers every console answer carries.

Templates are Jinja with autoescaping on for everything: whatever a crew or a request put into a
value (outputs, logs, names) is text on the page, never markup. The one place HTML made from
crew content reaches a page is a Markdown preview, and that goes through :mod:`.previews`'
sanitiser first and is marked safe there, nowhere else.

Static files are read once at import, served from memory with an ``ETag`` and, since their URLs
carry their content hash (``/static/console.css?v=…``), cached for a year as immutable.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response

from crewyard import humanize

from .csrf import NEW_COOKIE, cookie_header
from .viewer import viewer

HERE = Path(__file__).parent

#: The page policy. Scripts and styles run only when their element carries this answer's nonce
#: (:func:`page_policy`), which only our own templates put on our own static files: never "any file
#: of this origin", since a crew's artifact is served from this origin too, and markup that slipped
#: past escaping (``<script src="/v1/runs/…/artifacts/evil.js">``, an inline script or style)
#: cannot know the nonce. No inline style attribute, no ``eval``; images from this origin
#: (artifact previews), SSE and fetch to this origin, forms posting only here, never framed.
_PAGE_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page_policy(nonce: str) -> str:
    """The ``Content-Security-Policy`` of a page whose own script and stylesheet carry ``nonce``."""
    return _PAGE_CSP.format(nonce=nonce)


class Static:
    """One static file: its bytes, type and content hash."""

    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.digest = hashlib.sha256(self.body).hexdigest()[:16]
        self.media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # Litestar names the charset of a text/* type itself (twice, when the type had it too).
        if self.media_type.endswith("javascript") and not self.media_type.startswith("text/"):
            self.media_type += "; charset=utf-8"


STATIC = {p.name: Static(p) for p in sorted((HERE / "static").iterdir()) if p.is_file()}


def static_url(name: str) -> str:
    return f"/static/{name}?v={STATIC[name].digest}"


def _clock(value: Any) -> str:
    return _moment(value, "%H:%M:%S")


def _when(value: Any) -> str:
    return _moment(value, "%Y-%m-%d %H:%M:%S UTC")


def _moment(value: Any, form: str) -> str:
    """An ISO moment shown in UTC; "" when it is not one. A moment whose UTC form falls outside
    years 1 to 9999 (``9999-12-31T23:59:59-23:59``, stored before the API bounded expiries) is
    shown as given: a value already in a stream must never make its page fail."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return ""
    try:
        return (when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)).strftime(form)
    except (OverflowError, ValueError):
        return value


def duration(ms: Any) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
        return ""
    return humanize.duration(ms)


def size(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return humanize.size(value)


def pretty(value: Any) -> str:
    """JSON as indented text (escaped by the template like any text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def oneline(value: Any, limit: int = 160) -> str:
    return humanize.one_line(value, limit)


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.globals["static"] = static_url
ENV.filters.update(clock=_clock, when=_when, duration=duration, size=size, pretty=pretty, oneline=oneline)


def fragment(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def page(request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any) -> Response[str]:
    """A whole page; ``who`` (the viewer, with the CSRF token its forms carry) is added."""
    who = viewer(request)
    nonce = secrets.token_urlsafe(18)  # new for every answer: a page's nonce says nothing of the next
    html = ENV.get_template(template).render(who=who, csp_nonce=nonce, **context)
    headers = {"Content-Security-Policy": page_policy(nonce), **PAGE_HEADERS}
    scope: Any = request.scope
    if scope.get(NEW_COOKIE):
        headers["Set-Cookie"] = cookie_header(who.csrf, request.url.scheme == "https")
    return Response(html, status_code=status, media_type="text/html", headers=headers)
