"""Taking a run's artifacts in safely: regular files only, inside the target folder, within caps.

A crew is untrusted, and so is whatever it left in its artifacts folder: a symlink to
``/etc/passwd``, a hard link, a device node, a name with ``..``, a file of many gigabytes. The
docker backend receives the folder as a tar stream from the engine (:func:`extract_tar_stream`),
which keeps regular files only and records what it left out and why; the stream itself is read
within bounds (bytes, entries, header sizes) whatever its headers claim. The bwrap and process
backends leave the folder where the crew wrote it: the runner's collector (``runner/artifacts``)
reads it without following any link and reports what it skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from crewyard.archive import ArchiveError, ArchiveLimits, TarReader

DEFAULT_MAX_FILE = 100 * 1024 * 1024
DEFAULT_MAX_TOTAL = 500 * 1024 * 1024
#: Files a run may keep (the runner's collector stores at most this many).
MAX_ENTRIES = 10_000


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


def stream_limits(max_file: int, max_total: int) -> ArchiveLimits:
    """Bounds on reading an engine's archive of the artifacts folder, whatever its headers say:
    every byte (headers, skipped files and padding included) up to twice the total cap plus
    room for headers, and as many entries as the runner may keep, twice over (folders)."""
    return ArchiveLimits(
        unpacked_bytes=2 * max_total + 64 * 1024 * 1024,
        file_bytes=max_file,
        entries=2 * MAX_ENTRIES,
    )


def extract_tar_stream(
    chunks: Iterable[bytes], dest: Path, *, max_file: int, max_total: int, strip: str = ""
) -> Skipped:
    """Write the regular files of a tar stream under ``dest``; return what was left out.

    ``strip`` is a leading folder name the engine puts in front of every member (``get_archive``
    of ``/app/artifacts`` yields ``artifacts/...``). The stream is parsed by :mod:`crewyard.archive`
    (not ``tarfile``: no header is read whole before its size is checked, no quadratic parsing);
    when it breaks a bound or is malformed, what came before is kept and the rest is reported.
    """
    skipped: Skipped = []
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    reader = TarReader.plain(chunks, stream_limits(max_file, max_total))
    try:
        for member in reader.members():
            name = member.path
            if strip and (name == strip or name.startswith(strip + "/")):
                name = name[len(strip) + 1 :]  # "" for the folder itself
            if member.kind == "dir":
                continue
            if member.kind == "invalid":
                skipped.append(
                    (member.path, f"name leaves the artifacts folder or is unusable: {member.problem}")
                )
                continue
            rel = safe_relative(name)
            if rel is None:
                skipped.append((member.path, "name leaves the artifacts folder"))
                continue
            if member.kind != "file":
                skipped.append((str(rel), f"{member.kind}: only regular files are collected"))
                continue
            if member.size > max_file:
                skipped.append((str(rel), f"{member.size} bytes is over the per-file limit of {max_file}"))
                continue
            if total + member.size > max_total:
                skipped.append((str(rel), f"the artifacts' total would exceed {max_total} bytes"))
                continue
            if _write(root, rel, reader.chunks()):
                total += member.size
            else:
                skipped.append((str(rel), "conflicts with another entry"))
    except ArchiveError as exc:
        skipped.append(("(the rest)", f"not collected: {exc}"))
    return skipped


def _write(root: Path, rel: PurePosixPath, chunks: Iterator[bytes]) -> bool:
    """One file below ``root`` (which holds only what this extraction made: no links)."""
    target = root.joinpath(*rel.parts)
    # A file may not sit where an earlier member made a folder, or below an earlier file.
    if not target.resolve().is_relative_to(root) or target.is_dir():
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return False
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with open(fd, "wb") as out:
        for block in chunks:
            out.write(block)
    os.chmod(target, 0o644)  # never carry setuid bits or odd modes over from the crew
    return True
