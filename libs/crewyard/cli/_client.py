"""The CLI's side of the HTTP API: the typed client (:mod:`crewyard.client`), and one red line
for every failure.

Anything a user can cause or meet — an API error body, a server that is not running, a dropped
connection, a malformed URL — is a :class:`crewyard.client.ClientError` (a
:class:`crewyard.errors.CrewyardError`), which the command group prints as ``error: <message>``
with exit code 1; :class:`CliError` is the CLI's own such failure.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import click
import msgspec

from crewyard.client import DEFAULT_API, Client, seg

from ._credentials import api_key_for

__all__ = ["DEFAULT_API", "ApiClient", "CliError", "connect", "decoded", "seg"]

T = TypeVar("T")


class CliError(click.ClickException):
    """A failure to show as one red ``error:`` line (exit code 1)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def show(self, file: Any = None) -> None:
        # click.echo strips the colour when stderr is not a terminal, so pipes and logs stay clean.
        click.echo(click.style(f"error: {self.format_message()}", fg="red"), err=True, file=file)


class ApiClient(Client):
    """The client for ``--api``, with the key :func:`._credentials.api_key_for` finds."""

    def __init__(self, api_url: str, api_key: str | None = None) -> None:
        given = api_key or api_key_for(api_url) or ""
        # Around the key, spaces and line ends come with copying and pasting it (an HTTP header may
        # not end in one: it failed as a lost connection); inside it, they are a mistake.
        key = given.strip()
        problem = None
        if not (key.isascii() and key.isprintable()):  # an HTTP header carries nothing else
            problem = "it has characters other than printable ASCII"
        elif " " in key:
            problem = "it has a space in it"
        if problem is not None:
            source = "CREWYARD_API_KEY" if given == os.environ.get("CREWYARD_API_KEY") else "the API key"
            raise CliError(f"{source} is not a crewyard API key: {problem}")
        super().__init__(api_url, api_key=key, user_agent="crewyard-cli")


def connect(api_url: str, api_key: str | None = None) -> ApiClient:
    return ApiClient(api_url, api_key)


def decoded(answer: Any, kind: type[T]) -> T:
    """An answer of :meth:`ApiClient.call` as the contract type ``kind``; one that does not fit is
    one clear error, not a traceback."""
    try:
        return msgspec.convert(answer, kind)
    except msgspec.ValidationError as exc:
        raise CliError(f"the API answered with something unexpected: {exc}") from None
