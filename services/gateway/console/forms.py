"""What the console's forms share: a form becomes the API's own typed body, and goes to the API
route's own function (``route.fn``), so the console has no second idea of what an action means
and the checks are the API's. A 4xx answer becomes :class:`Refused`, which the form's page shows
beside the form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request

from ..errors import ApiError

_AT = re.compile(r" - at `\$\.?([^`]*)`$")

#: The lifetimes a form offers for a credential it makes (0: it never expires).
EXPIRY_DAYS = (0, 7, 30, 90, 365)


class Refused(Exception):
    """A form the API would refuse: its status and a sentence for the person who sent it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def typed(kind: type[Any], fields: dict[str, Any]) -> Any:
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = _AT.search(text)
        text = _AT.sub("", text)
        raise Refused(400, f"{where[1]}: {text}" if where and where[1] else text) from None


def expires_at(form: dict[str, str]) -> datetime | None:
    """When a credential the form makes ends: ``expires_days`` from now, one of :data:`EXPIRY_DAYS`."""
    try:
        days = int(form.get("expires_days") or 0)
    except ValueError:
        raise Refused(400, "expires: a number of days") from None
    if days not in EXPIRY_DAYS:
        raise Refused(400, "expires: choose one of the offered times")
    return datetime.now(UTC) + timedelta(days=days) if days else None


async def call_route(route: Any, request: Request[Any, Any, Any], **args: Any) -> Any:
    """The API route's own function; its 4xx answers become a :class:`Refused` form."""
    try:
        return await route.fn(request, **args)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            raise Refused(exc.status, exc.message) from None
        raise
