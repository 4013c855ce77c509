"""Collecting a run's artifacts from its host folder into the object store.

The folder was written by untrusted code, and on the process backend a child of the crew may
still be changing it while it is read. So no path is ever looked up twice: the walk opens the
folder, then each entry relative to its parent's descriptor with ``O_PATH | O_NOFOLLOW`` (a
symlink is opened as itself, never followed), checks what it opened (``fstat``: a folder is
walked, a regular file with one link is taken, anything else is reported and skipped), and
reads a file through that very descriptor (reopened via ``/proc/self/fd``, which names the open
file, not a path). Swapping an entry for a link to ``/etc/shadow`` after the walk saw a regular
file changes nothing: the descriptor still holds the file that was checked. A file that changed
while it was read (size or modification time) is skipped. Sizes and the number of files are
capped; objects are stored by content hash; the event carries name, size, content type, sha256.
What is stored is exactly what was hashed: a file is read once — into memory up to
``IN_MEMORY`` bytes, else copied into a folder of the runner's own — and that copy is stored
(objects are shared by every project under their hash: bytes changed between hashing and
storing would be served for another project's file of that hash).
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from crewyard.core.bounds import MAX_ARTIFACT_NAME
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
MAX_DEPTH = 32
#: A report names at most this many entries of each kind (skipped, over a limit), each name cut
#: to a few hundred characters, then says how many more there were: a crew's 30,000 symbolic
#: links are one line of the run's log, not 30,000 (and never a message the stream refuses).
MAX_REPORTED = 100
#: Entries looked at, at most: the rest of a folder holding more is left as it is.
MAX_ENTRIES = 200_000
MAX_FILES = 10_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | os.O_CLOEXEC


class Collected(msgspec.Struct):
    stored: list[ArtifactStored]
    skipped: list[str]  # human-readable reasons
    over_limit: list[str]


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return _EXTRA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _reopen(path_fd: int, flags: int) -> int:
    """A real descriptor for what ``path_fd`` refers to (the same inode: no path lookup)."""
    return os.open(f"/proc/self/fd/{path_fd}", flags)


#: Called with (name, readable descriptor, size) for each file to take; returns what was stored.
Take = Callable[[str, int, os.stat_result], ArtifactStored | None]


#: Control characters as a report shows them (escaped: names reach terminals).
_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def shown(name: str) -> str:
    """A name as a report shows it: at most about 300 characters, control characters and bytes
    that are not UTF-8 escaped."""
    try:  # the bytes of a file name that is not UTF-8 (which Python holds as surrogates)
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")
    name = raw.decode("utf-8", "backslashreplace").translate(_ESCAPED)
    return name if len(name) <= 300 else f"{name[:200]}…{name[-80:]}"


def name_problem(name: str, path_length: int) -> str | None:
    """Why an entry called ``name`` at a path of ``path_length`` characters cannot be (or hold) an
    artifact (the event's ``ArtifactName``), or None. Checked before anything is read, so that a
    name the event would refuse stores nothing; each folder's name once, not again in every path
    below it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    if _CONTROL.search(name):
        return "its name holds control characters"
    if path_length > MAX_ARTIFACT_NAME:
        return f"its path is longer than {MAX_ARTIFACT_NAME} characters"
    return None


def report(reasons: list[str], more: int, what: str) -> list[str]:
    """``reasons``, and a last line for the ``more`` that were only counted."""
    return reasons + ([f"… and {more} more {what}"] if more else [])


class _Enough(Exception):
    pass


def _names(dir_fd: int, most: int) -> list[str]:
    """A folder's names in order, reading no more than one past ``most`` of them: the crew chose
    how many there are (``os.listdir`` would hold them all, however many millions)."""
    names: list[str] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            names.append(entry.name)
            if len(names) > most:
                break
    return sorted(names)


class _Walk:
    def __init__(self, take: Take, max_file: int, max_total: int) -> None:
        self.take, self.max_file, self.max_total = take, max_file, max_total
        self.total = 0
        self.seen = 0
        self.result = Collected(stored=[], skipped=[], over_limit=[])
        self.more_skipped = self.more_over = 0

    def skip(self, rel: str, why: str) -> None:
        if len(self.result.skipped) < MAX_REPORTED:
            self.result.skipped.append(f"{shown(rel)}: {why}")
        else:
            self.more_skipped += 1

    def over(self, rel: str, why: str) -> None:
        if len(self.result.over_limit) < MAX_REPORTED:
            self.result.over_limit.append(f"{shown(rel)} {why}")
        else:
            self.more_over += 1

    def folder(self, dir_fd: int, prefix: str, depth: int) -> None:
        for name in _names(dir_fd, MAX_ENTRIES - self.seen):
            self.seen += 1
            if self.seen > MAX_ENTRIES:
                raise _Enough
            rel = prefix + name
            if (problem := name_problem(name, len(rel))) is not None:
                self.skip(rel, f"not collected: {problem}")
                continue
            try:
                entry = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                self.skip(rel, f"cannot be opened ({exc.strerror})")
                continue
            try:
                self.entry(entry, rel, depth)
            finally:
                os.close(entry)

    def entry(self, entry: int, rel: str, depth: int) -> None:
        st = os.fstat(entry)
        if stat.S_ISLNK(st.st_mode):
            self.skip(rel, "symbolic link not followed")
        elif stat.S_ISDIR(st.st_mode):
            if depth >= MAX_DEPTH:
                self.skip(rel, f"folders nested deeper than {MAX_DEPTH} are not collected")
                return
            sub = _reopen(entry, _DIR_FLAGS)
            try:
                self.folder(sub, rel + "/", depth + 1)
            finally:
                os.close(sub)
        elif not stat.S_ISREG(st.st_mode):
            self.skip(rel, "not a regular file")
        elif st.st_nlink > 1:
            self.skip(rel, "hard link (a file with other names) not collected")
        elif st.st_size > self.max_file:
            self.over(rel, f"is {st.st_size} bytes, over the {self.max_file}-byte limit per artifact")
        elif self.total + st.st_size > self.max_total:
            self.over(rel, f"would take the run's artifacts over the {self.max_total}-byte total limit")
        elif len(self.result.stored) >= MAX_FILES:
            self.over(rel, f"is one more than the {MAX_FILES} artifacts a run keeps")
        else:
            self.file(entry, rel, st)

    def file(self, entry: int, rel: str, st: os.stat_result) -> None:
        fd = _reopen(entry, os.O_RDONLY | os.O_CLOEXEC)
        try:
            stored = self.take(rel, fd, st)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if stored is None or (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            self.skip(rel, "changed while it was being collected")
            return
        self.total += st.st_size
        self.result.stored.append(stored)


def walk(root: Path, take: Take, *, max_file: int, max_total: int) -> Collected:
    """Hand every collectable file under ``root`` to ``take``; report the rest (blocking)."""
    state = _Walk(take, max_file, max_total)
    try:
        root_fd = os.open(root, _DIR_FLAGS | os.O_NOFOLLOW)
    except FileNotFoundError:
        return state.result
    except OSError as exc:  # e.g. the folder itself was swapped for a link
        state.result.skipped.append(
            f"the artifacts folder cannot be read safely ({exc.strerror}): nothing taken"
        )
        return state.result
    try:
        state.folder(root_fd, "", 0)
    except _Enough:
        state.result.skipped.append(f"more than {MAX_ENTRIES} entries: the rest were not looked at")
    finally:
        os.close(root_fd)
    result = state.result
    result.skipped = report(result.skipped, state.more_skipped, "entries left out")
    result.over_limit = report(result.over_limit, state.more_over, "files over a limit")
    return result


#: A file up to this size is read into memory once; a larger one is copied (see the module doc).
IN_MEMORY = 16 << 20


def _read(fd: int, expected: int, limit: int, copy: int | None = None) -> tuple[str, int, bytes]:
    """The file's sha256 and size, read once through ``fd`` up to one byte past ``expected`` (a
    file that grows while it is read is not chased: it is skipped as changed); its bytes (at
    most ``limit`` of them kept) or, with ``copy``, written to that descriptor as they are read."""
    h, size, kept = hashlib.sha256(), 0, bytearray()
    while size <= expected and (chunk := os.pread(fd, min(1 << 20, expected + 1 - size), size)):
        h.update(chunk)
        size += len(chunk)
        if copy is not None:
            rest = memoryview(chunk)
            while rest:
                rest = rest[os.write(copy, rest) :]
        elif len(kept) <= limit:
            kept += chunk
    return h.hexdigest(), size, bytes(kept)


async def collect(
    root: Path, objects: ObjectStore, *, max_file: int, max_total: int, staging: Path | None = None
) -> Collected:
    """Store the collectable files under ``root``; one file descriptor open at a time. Files
    over ``IN_MEMORY`` are copied into a private folder made in ``staging`` (a folder of the
    runner's that the crew cannot reach; default the system's temporary folder) before they are
    stored."""
    loop = asyncio.get_running_loop()

    def private_folder() -> Path:  # 0700
        place = staging if staging is not None and staging.is_dir() else None
        return Path(tempfile.mkdtemp(prefix=".collecting-", dir=place))

    scratch = await asyncio.to_thread(private_folder)

    def take(name: str, fd: int, st: os.stat_result) -> ArtifactStored | None:
        copy_path = scratch / "file"
        copy = (
            os.open(copy_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            if st.st_size > IN_MEMORY
            else None
        )
        try:
            digest, size, data = _read(fd, st.st_size, IN_MEMORY, copy)
        finally:
            if copy is not None:
                os.close(copy)
        try:
            if size != st.st_size or (copy is None and size > IN_MEMORY):
                return None
            obj = artifact_object(digest)

            async def put() -> None:
                if not await objects.exists(obj):
                    if copy is None:
                        await objects.put_bytes(obj, data)
                    else:
                        await objects.put_file(obj, copy_path)

            asyncio.run_coroutine_threadsafe(put(), loop).result()
        finally:
            copy_path.unlink(missing_ok=True)
        return ArtifactStored(name=name, size=size, content_type=content_type(name), sha256=digest)

    try:
        return await asyncio.to_thread(walk, root, take, max_file=max_file, max_total=max_total)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
