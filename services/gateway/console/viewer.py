"""Who is looking at a console page, and what the page may offer them.

The gateway's access guard has already decided that the request may see the page (each route
declares its role like any API route); this only decides which buttons and links to show, so a
``read`` key sees no cancel button. The API refuses such a key anyway: hiding a button is a
courtesy, never the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from crewyard.core.access import ApiKey, rank

from ..access import scoped_by_handler
from .csrf import token_for


@dataclass(frozen=True)
class Viewer:
    #: None: the platform runs without authentication (``--no-auth``, one local user).
    key: ApiKey | None
    csrf: str = ""

    @property
    def role(self) -> str:
        return self.key.role if self.key is not None else "admin"

    @property
    def project(self) -> str | None:
        """The one project the key covers, or None for every project."""
        return self.key.project if self.key is not None else None

    @property
    def name(self) -> str:
        if self.key is None:
            return "local (no sign-in)"
        return f"{self.key.name} · {self.key.role}" + (f" · {self.key.project}" if self.key.project else "")

    def may(self, role: str, project: str | None = None) -> bool:
        if self.key is None:
            return True
        if project is not None and not self.key.covers(project):
            return False
        return rank(self.key.role) >= rank(role)

    def sees(self, project: str) -> bool:
        return self.key is None or self.key.covers(project)


def viewer(request: Request[Any, Any, Any]) -> Viewer:
    """The key the guard authenticated (``scope["auth"]``), with the page's CSRF token."""
    key = request.scope.get("auth")  # set by the access guard
    scoped_by_handler(request)  # every page filters what it shows by its viewer
    csrf, _new = token_for(request)
    return Viewer(key if isinstance(key, ApiKey) else None, csrf)
