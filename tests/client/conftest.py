"""The client's tests run against the fake gateway: a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crewyard.testing.fakeapi import FakeApi, serve


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serve() as fake:
        yield fake


@pytest.fixture
def dead_url() -> str:
    """The URL of a loopback port where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
