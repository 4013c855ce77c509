"""Crew source archives: packing a folder (CLI), checking an upload (gateway), unpacking (builder, runner).

An archive is a gzip tarball of the crew folder with the config file at its root. Uploads are
hostile until checked: no absolute paths, no ``..``, no links, no device files, no names that
are not UTF-8 or hold control characters, no path twice; sizes are bounded while reading (see
:mod:`crewyard.archive`, which both checking and unpacking use — ``tarfile`` only writes).
The source digest is computed over the normalised contents (names, modes, bytes), so the same
folder packed twice has the same digest whatever the archive's timestamps. A source is its
files: a folder with no file in it is not part of it, and is not unpacked — sources are shared
by every project under their digest, and an empty folder the digest did not cover (``openai/``,
importable as an empty package) could otherwise ride along from whoever uploaded it first.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from crewyard.archive import ArchiveError, ArchiveLimits, Member, TarReader
from crewyard.core.crewfile import CONFIG_FILES, CrewConfigError, ParsedConfig, parse
from crewyard.exclusions import Exclusions

#: The crew's configuration file is read into memory: it has no business being bigger.
MAX_CONFIG_BYTES = 1024 * 1024
__all__ = ["ArchiveError", "ArchiveLimits", "CheckedArchive", "check", "extract", "find_config", "pack"]


class CheckedArchive(msgspec.Struct):
    digest: str
    size: int
    unpacked_size: int
    files: int
    config: ParsedConfig


def find_config(folder: Path) -> Path:
    for name in CONFIG_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CrewConfigError(
        f"no crewyard.toml, crewship.toml or langgraph.json in {folder} (run 'crewyard init' there)"
    )


def pack(folder: Path, exclude: list[str] | None = None) -> bytes:
    """A reproducible gzip tarball of ``folder`` without excluded paths: ``exclude`` (the crew's
    ``[build] exclude``), its ``.gitignore`` files and the platform's defaults, gitignore-style
    (:mod:`crewyard.exclusions`)."""
    exclusions = Exclusions(folder, exclude or [])
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            rel_root = Path(root).relative_to(folder)
            dirs[:] = [d for d in dirs if not exclusions.excluded((rel_root / d).as_posix(), is_dir=True)]
            for name in sorted(files):
                path = Path(root) / name
                rel = (rel_root / name).as_posix()
                if exclusions.excluded(rel) or path.is_symlink() or not path.is_file():
                    continue
                info = tarfile.TarInfo(rel)
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


Source = bytes | Path | BinaryIO


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, Path):
        with source.open("rb") as fh:
            yield fh
    else:
        yield source


def _entry(digest: Any, member: Member) -> None:
    digest.update(f"{member.path}\0{member.executable}\0{member.size}\0".encode())


def check(source: Source, limits: ArchiveLimits | None = None) -> CheckedArchive:
    """Validate an uploaded archive in one streaming pass and read its crew configuration."""
    limits = limits or ArchiveLimits()
    digest = hashlib.sha256()
    files = unpacked = 0
    config_text: tuple[str, str] | None = None
    with _opened(source) as fh:
        size = fh.seek(0, io.SEEK_END)
        if size > limits.compressed_bytes:
            raise ArchiveError(
                f"upload is larger than the {limits.compressed_bytes}-byte limit", code="payload_too_large"
            )
        fh.seek(0)
        if fh.read(2) != b"\x1f\x8b":
            raise ArchiveError("upload is not a gzip tarball (expected Content-Type application/gzip)")
        fh.seek(0)
        reader = TarReader(fh, limits)
        layout = _Layout(limits)
        for member in reader.members():
            layout.add(member)
            if member.is_dir:
                continue
            files += 1
            unpacked += member.size
            _entry(digest, member)
            keep = member.path in CONFIG_FILES
            if keep and member.size > MAX_CONFIG_BYTES:
                raise ArchiveError(
                    f"{member.path} is larger than {MAX_CONFIG_BYTES} bytes", code="invalid_config"
                )
            kept = []
            for chunk in reader.chunks():
                digest.update(chunk)
                if keep:
                    kept.append(chunk)
            if keep and (
                config_text is None or CONFIG_FILES.index(member.path) < CONFIG_FILES.index(config_text[0])
            ):
                config_text = (member.path, b"".join(kept).decode("utf-8", errors="replace"))
    if config_text is None:
        raise ArchiveError(
            "archive has no crewyard.toml, crewship.toml or langgraph.json at its root", code="invalid_config"
        )
    try:
        config = parse(config_text[1], config_text[0])
    except CrewConfigError as exc:
        raise ArchiveError(str(exc), code="invalid_config") from None
    return CheckedArchive(
        digest="sha256-" + digest.hexdigest(),
        size=size,
        unpacked_size=unpacked,
        files=files,
        config=config,
    )


class _Layout:
    """Each path once, and never both a file and a folder (extraction would fail half-way). The
    folders a path implies count as entries too: a few hundred deep paths, each under a folder of
    its own, would otherwise be hundreds of thousands of folders from one small upload."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.files: set[str] = set()
        self.dirs: set[str] = {""}
        self.most = limits.entries + 1  # with the root

    def add(self, member: Member) -> None:
        path = member.path
        if path in self.files:
            raise ArchiveError(f"archive member {path!r} appears twice")
        if not member.is_dir and path in self.dirs:
            raise ArchiveError(f"archive member {path!r} is both a file and a folder")
        (self.dirs if member.is_dir else self.files).add(path)
        parent = path.rpartition("/")[0]
        while parent not in self.dirs:
            if parent in self.files:
                raise ArchiveError(f"archive member {path!r} is inside {parent!r}, which is a file")
            self.dirs.add(parent)
            parent = parent.rpartition("/")[0]
        if len(self.files) + len(self.dirs) > self.most:
            raise ArchiveError(
                f"archive has more than {self.most - 1} entries (files and folders, with the folders"
                " their paths imply)",
                code="payload_too_large",
            )


def extract(
    source: Source, dest: Path, *, digest: str | None = None, limits: ArchiveLimits | None = None
) -> None:
    """Unpack an archive into ``dest`` with the same bounded reading as :func:`check`, streaming
    every file to disk (atomically: a half-extracted tree never shows). With ``digest``, the
    contents must have that source digest."""
    limits = limits or ArchiveLimits()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp", dir=dest.parent))
    try:
        hasher = hashlib.sha256()
        with _opened(source) as fh:
            reader = TarReader(fh, limits)
            layout = _Layout(limits)
            for member in reader.members():
                layout.add(member)
                target = tmp / member.path
                if member.is_dir:
                    continue  # not in the digest: only the folders files imply are made
                _entry(hasher, member)
                target.parent.mkdir(parents=True, exist_ok=True)
                # Everything under tmp was made here (no links exist); O_NOFOLLOW|O_EXCL anyway.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(target, flags, 0o755 if member.executable else 0o644)
                with os.fdopen(fd, "wb") as out:
                    for chunk in reader.chunks():
                        hasher.update(chunk)
                        out.write(chunk)
        if digest is not None and "sha256-" + hasher.hexdigest() != digest:
            raise ArchiveError(f"archive contents do not match their digest {digest}")
        tmp.chmod(0o755)  # as its folders and files: readable by a sandbox's user (mkdtemp: 0700)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
