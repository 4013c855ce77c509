"""The object store interface: crew sources and run artifacts, addressed by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from crewyard.errors import CrewyardError


class ObjectStoreError(CrewyardError):
    """Root of object store errors."""


class ObjectNotFound(ObjectStoreError):
    pass


class ObjectCorrupt(ObjectStoreError):
    """An object whose bytes, read whole, do not match the digest stored with them."""


class ObjectStore(Protocol):
    async def put_file(self, name: str, path: Path) -> int:
        """Store the file's bytes under ``name``; return the size."""
        ...

    async def put_bytes(self, name: str, data: bytes) -> int: ...

    async def get_bytes(self, name: str) -> bytes: ...

    async def get_file(self, name: str, path: Path) -> None:
        """Write the object to ``path`` (streamed, never all in memory)."""
        ...

    async def exists(self, name: str) -> bool: ...

    def stream(self, name: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the object (``end`` None: to its end), a chunk at a time:
        never the whole object in memory. ``ObjectNotFound`` when there is no such object."""
        ...
