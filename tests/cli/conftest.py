"""Fixtures of the CLI tests: the fake gateway (:mod:`crewyard.testing.fakeapi`, a real HTTP
server on loopback), a dead URL, and running the CLI in-process."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from crewyard.cli import cli
from crewyard.testing.fakeapi import FakeApi, serve


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serve() as fake:
        yield fake


@pytest.fixture
def dead_url() -> str:
    """The URL of a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    for var in ("CREWYARD_API", "CREWYARD_PROJECT", "CREWYARD_API_KEY", "CREWYARD_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "160")

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, prog_name="crewyard")

    return run
