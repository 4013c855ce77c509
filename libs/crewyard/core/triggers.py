"""Incoming triggers as pure code: tokens, and the run input a request body becomes.

A token is 32 random bytes (URL-safe base64, 43 characters); only its SHA-256 is stored, so the
read model can look a request up by hash and nothing stored lets anyone rebuild the URL.

Templates map request fields to input fields: a JSON object whose string values of the form
``$.a.b.0.c`` are replaced by the value at that path of the body (``null`` where it is missing);
anything else is taken literally. E.g. for a GitHub push::

    {"repository": "$.repository.full_name", "branch": "$.ref", "source": "github"}
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any

from crewyard.errors import CrewyardError

TOKEN_BYTES = 32
MAX_TEMPLATE_FIELDS = 100


class InvalidTemplate(CrewyardError, ValueError):
    pass


def new_token(rand: Callable[[int], bytes] = os.urandom) -> str:
    return base64.urlsafe_b64encode(rand(TOKEN_BYTES)).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    """Cheap shape check before any lookup (the alphabet and length of :func:`new_token`)."""
    return len(token) == 43 and all(c.isalnum() or c in "-_" for c in token)


def check_template(template: dict[str, Any]) -> dict[str, Any]:
    if len(template) > MAX_TEMPLATE_FIELDS:
        raise InvalidTemplate(f"a template maps at most {MAX_TEMPLATE_FIELDS} fields")
    for key, value in template.items():
        if isinstance(value, str) and value.startswith("$") and not (value == "$" or value.startswith("$.")):
            raise InvalidTemplate(f"template field {key!r}: a path is written $.field.subfield")
    return template


def _is_index(part: str) -> bool:
    """A list index in a template's path: ASCII digits only ("²" is a digit to ``str.isdigit``)."""
    return part.isascii() and part.isdigit() and len(part) <= 9


def _at(body: Any, path: str) -> Any:
    value = body
    for part in path.split(".")[1:]:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and _is_index(part) and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def apply_template(template: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    if template is None:
        return body
    return {
        key: _at(body, value) if isinstance(value, str) and value.startswith("$") else value
        for key, value in template.items()
    }
