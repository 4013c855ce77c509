"""Taking a run's artifacts in safely: regular files only, inside the target folder, within caps.

A crew is untrusted, and so is whatever it left in its artifacts folder: a symlink to
``/etc/passwd``, a hard link, a device node, a name with ``..``, a file of many gigabytes. The
docker backend receives the folder as a tar stream from the engine (:func:`extract_tar_stream`),
which keeps regular files only and records what it left out and why. The bwrap and process
backends leave the folder where the crew wrote it: the runner's collector (``runner/artifacts``)
reads it without following any link and reports what it skips.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

DEFAULT_MAX_FILE = 100 * 1024 * 1024
DEFAULT_MAX_TOTAL = 500 * 1024 * 1024


#: (name, reason) of every entry that was not taken.
Skipped = list[tuple[str, str]]


def safe_relative(name: str) -> PurePosixPath | None:
    """The member name as a relative path inside the folder, or None when it tries to leave it."""
    path = PurePosixPath(name)
    if path.is_absolute():
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


class _ChunkReader:
    """A read-only file object over an iterator of byte chunks (the engine's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if size < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:size], self._buf[size:]
        return data


def extract_tar_stream(
    chunks: Iterable[bytes], dest: Path, *, max_file: int, max_total: int, strip: str = ""
) -> Skipped:
    """Write the regular files of a tar stream under ``dest``; return what was left out.

    ``strip`` is a leading folder name the engine puts in front of every member (``get_archive``
    of ``/app/artifacts`` yields ``artifacts/...``).
    """
    skipped: Skipped = []
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    # "r|" reads strictly forward, so nothing is buffered beyond one member.
    with tarfile.open(fileobj=cast(IO[bytes], _ChunkReader(chunks)), mode="r|") as tar:
        for member in tar:
            name = member.name
            if strip and (name == strip or name.startswith(strip + "/")):
                name = name[len(strip) + 1 :]  # "" for the folder itself
            if member.isdir():
                continue
            rel = safe_relative(name)
            if rel is None:
                skipped.append((member.name, "name leaves the artifacts folder"))
                continue
            if not member.isreg():
                kind = "symlink" if member.issym() else "hard link" if member.islnk() else "special file"
                skipped.append((str(rel), f"{kind}: only regular files are collected"))
                continue
            if member.size > max_file:
                skipped.append((str(rel), f"{member.size} bytes is over the per-file limit of {max_file}"))
                continue
            if total + member.size > max_total:
                skipped.append((str(rel), f"the artifacts' total would exceed {max_total} bytes"))
                continue
            target = root.joinpath(*rel.parts)
            # A file may not sit where an earlier member made a folder, or below an earlier file.
            if not target.resolve().is_relative_to(root) or target.is_dir():
                skipped.append((str(rel), "conflicts with another entry"))
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                skipped.append((str(rel), "conflicts with another entry"))
                continue
            with open(target, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
            os.chmod(target, 0o644)  # never carry setuid bits or odd modes over from the crew
            total += member.size
    return skipped
