"""What is stored for an artifact is exactly what was hashed: objects are shared by every
project under their sha256, and a file changed between hashing and storing (a writer still at
it) stored other bytes under that name — served for another project's file of that hash."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from crewyard.runner import artifacts
from crewyard.workspace import artifact_object


def _rewrite(file: Path) -> None:
    """Other bytes of the same size, the modification time set back as it was."""
    before = file.stat()
    file.write_bytes(b"x" * before.st_size)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


class _Racing:
    """An object store whose existence check comes while a writer changes the file."""

    def __init__(self, file: Path) -> None:
        self.file, self.stored = file, {}  # type: ignore[var-annotated]

    async def exists(self, name: str) -> bool:
        _rewrite(self.file)
        return False

    async def put_bytes(self, name: str, data: bytes) -> int:
        self.stored[name] = data
        return len(data)

    async def put_file(self, name: str, path: Path) -> int:
        return await self.put_bytes(name, await asyncio.to_thread(path.read_bytes))


@pytest.mark.parametrize("copied", [False, True])
async def test_the_stored_bytes_are_the_hashed_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copied: bool
) -> None:
    if copied:
        monkeypatch.setattr(artifacts, "IN_MEMORY", 16)  # larger files go through a copy
    root, staging = tmp_path / "artifacts", tmp_path / "work"
    root.mkdir()
    staging.mkdir()
    report = root / "report.txt"
    report.write_bytes(b"the crew's report, " * 4)
    objects = _Racing(report)
    collected = await artifacts.collect(root, objects, max_file=1 << 20, max_total=1 << 20, staging=staging)  # type: ignore[arg-type]
    [stored] = collected.stored  # (its modification time was set back: not seen as changed)
    assert objects.stored == {artifact_object(stored.sha256): b"the crew's report, " * 4}
    assert hashlib.sha256(b"the crew's report, " * 4).hexdigest() == stored.sha256
    assert list(staging.iterdir()) == []  # the copies went with the collection


def test_a_file_growing_while_it_is_read_is_not_chased(tmp_path: Path) -> None:
    """A writer still appending made the read go on for as long as it did (and, past 16 MiB,
    fill the runner's disk with the copy): it stops one byte past the size seen, and the file
    is skipped as changed."""
    grown = tmp_path / "log.txt"
    grown.write_bytes(b"y" * 5_000_000)  # the size seen was 1,000: it grew since
    fd = os.open(grown, os.O_RDONLY)
    try:
        _, size, data = artifacts._read(fd, 1_000, artifacts.IN_MEMORY)
    finally:
        os.close(fd)
    assert size == 1_001 and len(data) == 1_001
