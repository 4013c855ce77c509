"""What the console's forms share: a form becomes the API's own typed body, and goes to the API
route's own function (``route.fn``), so the console has no second idea of what an action means
and the checks are the API's. A 4xx answer becomes :class:`Refused`, which the form's page shows
beside the form."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request

from ..errors import ApiError

_AT = re.compile(r" - at `\$\.?([^`]*)`$")


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


async def call_route(route: Any, request: Request[Any, Any, Any], **args: Any) -> Any:
    """The API route's own function; its 4xx answers become a :class:`Refused` form."""
    try:
        return await route.fn(request, **args)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            raise Refused(exc.status, exc.message) from None
        raise
