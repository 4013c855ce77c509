"""Local copies of what runs need on this host: unpacked crew sources and the runtime package.

Sources live in the object store (``sources/<digest>``); each builder or runner host unpacks a
source once into ``<cache>/sources/<digest>`` (read-only use afterwards), so services on other
machines work from the same object store without sharing a file system. The archive is fetched
to a file and unpacked with the same bounded reader that checked the upload, and its contents
must match the digest they are stored under.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import crewyard_runtime
from crewyard.archive import ArchiveLimits
from crewyard.keyedlock import KeyedLock
from crewyard.objects import ObjectStore
from crewyard.packaging import extract


def source_object(digest: str) -> str:
    return f"sources/{digest}"


def artifact_object(sha256: str) -> str:
    return f"artifacts/{sha256}"


def _spool_file(target: Path) -> Path:
    """A fresh file beside ``target``: another service of this host may fetch the same source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tar.gz", dir=target.parent)
    os.close(fd)
    return Path(name)


#: The folder of a host's unpacked sources. ``.2``: a source's files only, no folder without
#: files (``packaging``); what the first folder (``sources``) holds may carry an empty folder
#: planted by another project's upload of the same files, and is not read.
SOURCES = "sources.2"


class Workspace:
    def __init__(self, cache_dir: Path, objects: ObjectStore, limits: ArchiveLimits | None = None) -> None:
        self.cache_dir = cache_dir
        self.objects = objects
        self.limits = limits or ArchiveLimits()
        self._locks = KeyedLock()

    async def source(self, digest: str) -> Path:
        target = self.cache_dir / SOURCES / digest.replace(":", "-")
        if target.is_dir():
            return target
        async with self._locks.hold(digest):
            if not target.is_dir():
                archive = await asyncio.to_thread(_spool_file, target)
                try:
                    await self.objects.get_file(source_object(digest), archive)
                    await asyncio.to_thread(extract, archive, target, digest=digest, limits=self.limits)
                finally:
                    await asyncio.to_thread(archive.unlink, True)
        return target

    def runtime_dir(self) -> Path:
        """A folder containing only the ``crewyard_runtime`` package (put on the crew's PYTHONPATH)."""
        src = Path(crewyard_runtime.__file__).parent
        target = self.cache_dir / "runtime" / crewyard_runtime.VERSION
        package = target / "crewyard_runtime"
        stamp = target / ".stamp"
        mtime = str(max(p.stat().st_mtime_ns for p in src.glob("*.py")))
        if not (stamp.exists() and stamp.read_text() == mtime):
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp / "crewyard_runtime", ignore=shutil.ignore_patterns("__pycache__"))
            (tmp / ".stamp").write_text(mtime)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        assert package.is_dir()
        return target
