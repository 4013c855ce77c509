"""Collecting a run's artifacts from its host folder into the object store.

The folder was written by untrusted code: links are never followed (a symlink to /etc/passwd
is reported and skipped), only regular files count, and per-file and total sizes are capped.
Objects are stored by content hash; the event carries name, size, content type and sha256.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat
from pathlib import Path

import msgspec

from crewyard.core.events import ArtifactStored
from crewyard.objects import ObjectStore
from crewyard.workspace import artifact_object

_EXTRA_TYPES = {
    ".md": "text/markdown",
    ".jsonl": "application/jsonl",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".csv": "text/csv",
    ".log": "text/plain",
}


class Collected(msgspec.Struct):
    stored: list[ArtifactStored]
    skipped: list[str]  # human-readable reasons
    over_limit: list[str]


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan(
    root: Path, *, max_file: int, max_total: int
) -> tuple[list[tuple[str, Path, int]], list[str], list[str]]:
    """Files to store (name, path, size), skipped entries, and files over a size limit."""
    files: list[tuple[str, Path, int]] = []
    skipped: list[str] = []
    over: list[str] = []
    total = 0
    if not root.is_dir():
        return files, skipped, over
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for d in list(dirnames):
            if (base / d).is_symlink():
                skipped.append(f"{(base / d).relative_to(root)}: symbolic link not followed")
                dirnames.remove(d)
        dirnames.sort()
        for fname in sorted(filenames):
            path = base / fname
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                skipped.append(f"{rel}: symbolic link not followed")
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel}: not a regular file")
                continue
            if st.st_size > max_file:
                over.append(f"{rel} is {st.st_size} bytes, over the {max_file}-byte limit per artifact")
                continue
            if total + st.st_size > max_total:
                over.append(f"{rel} would take the run's artifacts over the {max_total}-byte total limit")
                continue
            total += st.st_size
            files.append((rel, path, st.st_size))
    return files, skipped, over


async def collect(root: Path, objects: ObjectStore, *, max_file: int, max_total: int) -> Collected:
    import asyncio

    files, skipped, over = await asyncio.to_thread(scan, root, max_file=max_file, max_total=max_total)
    stored: list[ArtifactStored] = []
    for name, path, size in files:
        digest = await asyncio.to_thread(_sha256, path)
        obj = artifact_object(digest)
        if not await objects.exists(obj):
            await objects.put_file(obj, path)
        stored.append(ArtifactStored(name=name, size=size, content_type=content_type(name), sha256=digest))
    return Collected(stored=stored, skipped=skipped, over_limit=over)
