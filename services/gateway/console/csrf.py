"""Cross-site request forgery: every form the console posts carries a token a foreign page cannot
know, and the browser's own ``Sec-Fetch-Site`` must not say the request came from elsewhere.

The token is the HMAC of the signed-in session (see ``gateway/sessions.py``); without sign-in (``--no-auth``)
it is a random value kept in a ``SameSite=Strict`` cookie of its own that the form must repeat
(a double-submit cookie). Both are compared in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any

from litestar import Request

from ..errors import ApiError
from ..sessions import CSRF_SCOPE

COOKIE = "crewyard_csrf"
FIELD = "_csrf"
HEADER = "x-csrf-token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: Where ``scope`` keeps the token a page renders into its forms (a session's, set by the guard).
SCOPE_KEY = CSRF_SCOPE
#: Set in ``scope`` when the token is new: the page's answer sets the cookie.
NEW_COOKIE = "crewyard.csrf.new"


def token_for(request: Request[Any, Any, Any]) -> tuple[str, bool]:
    """The request's CSRF token and whether it is new (then the answer must set its cookie)."""
    scope: Any = request.scope
    bound = scope.get(SCOPE_KEY)  # a signed-in session's own token
    if isinstance(bound, str) and bound:
        return bound, False
    cookie = request.cookies.get(COOKIE, "")
    if _TOKEN.fullmatch(cookie):
        scope[SCOPE_KEY] = cookie
        return cookie, False
    fresh = secrets.token_urlsafe(32)
    scope[SCOPE_KEY] = fresh
    scope[NEW_COOKIE] = True
    return fresh, True


def cookie_header(token: str, secure: bool) -> str:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{flags}"


def forged() -> ApiError:
    return ApiError(403, "csrf", "this form is stale or was not sent from the console; reload the page")


async def checked_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted form, once its CSRF token matches (403 otherwise)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise forged()
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    expected, new = token_for(request)
    sent = values.pop(FIELD, "") or request.headers.get(HEADER, "")
    if new or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise forged()
    return values
