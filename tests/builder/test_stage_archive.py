"""The build folder handed to the engine is a tar archive that ends at its end-of-archive blocks:
Podman's copier stops reading there, and zeros still being sent after them (tar's rounding up to
a 10 KiB record) made the engine answer 500 "broken pipe" to a copy now and then."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from crewyard.builder.backends._stage import _source_tar

BLOCK = tarfile.BLOCKSIZE


def _end_of_members(archive: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + -(-last.size // BLOCK) * BLOCK


@pytest.mark.parametrize("files", [None, ["main.py", "pkg/tool.py"]])
def test_the_archive_ends_at_its_end_of_archive_blocks(tmp_path: Path, files: list[str] | None) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "pkg" / "tool.py").write_text("x = 1\n" * 300)
    archive = _source_tar(tmp_path, "echo build\n", 1000, {"extra/lock.txt": b"pinned\n"}, files)
    end = _end_of_members(archive)
    assert archive[end:] == b"\0" * (2 * BLOCK)  # the two end blocks, nothing after them
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        names = set(tar.getnames())
        script = tar.extractfile("src/.crewyard-build.sh")
        assert script is not None and script.read() == b"echo build\n"
    assert {"src/main.py", "src/pkg/tool.py", "src/extra/lock.txt"} <= names
