"""Crew source archives: packing a folder (CLI), checking an upload (gateway), unpacking (builder, runner).

An archive is a gzip tarball of the crew folder with the config file at its root. Uploads are
hostile until checked: no absolute paths, no ``..``, no links, no device files, bounded sizes.
The source digest is computed over the normalised contents (names, modes, bytes), so the same
folder packed twice has the same digest whatever the archive's timestamps.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import msgspec

from crewyard.core.crewfile import CONFIG_FILES, CrewConfigError, ParsedConfig, parse

ALWAYS_EXCLUDED = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    ".env",
    ".crewyard",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)


class ArchiveError(ValueError):
    """An upload that is not an acceptable crew archive; ``code`` is the API error code."""

    def __init__(self, message: str, code: str = "invalid_archive") -> None:
        super().__init__(message)
        self.code = code


class CheckedArchive(msgspec.Struct):
    digest: str
    size: int
    unpacked_size: int
    files: int
    config: ParsedConfig


def _excluded(rel: str, patterns: tuple[str, ...] | list[str]) -> bool:
    parts = PurePosixPath(rel).parts
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
        if rel.startswith(pat + "/"):
            return True
    return False


def find_config(folder: Path) -> Path:
    for name in CONFIG_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CrewConfigError(f"no crewyard.toml or crewship.toml in {folder} (run 'crewyard init' there)")


def pack(folder: Path, exclude: list[str] | None = None) -> bytes:
    """A reproducible gzip tarball of ``folder`` without excluded paths."""
    patterns = (*ALWAYS_EXCLUDED, *(exclude or []))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            rel_root = Path(root).relative_to(folder)
            dirs[:] = [d for d in dirs if not _excluded((rel_root / d).as_posix(), patterns)]
            for name in sorted(files):
                path = Path(root) / name
                rel = (rel_root / name).as_posix()
                if _excluded(rel, patterns) or path.is_symlink() or not path.is_file():
                    continue
                info = tarfile.TarInfo(rel)
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def check(data: bytes, *, max_unpacked: int) -> CheckedArchive:
    """Validate an uploaded archive and read its crew configuration."""
    if data[:2] != b"\x1f\x8b":
        raise ArchiveError("upload is not a gzip tarball (expected Content-Type application/gzip)")
    digest = hashlib.sha256()
    unpacked = files = 0
    config_text: tuple[str, str] | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = member.name
                path = PurePosixPath(name)
                if path.is_absolute() or name.startswith("/"):
                    raise ArchiveError(f"archive member {name!r} has an absolute path")
                if ".." in path.parts:
                    raise ArchiveError(f"archive member {name!r} points outside the crew folder")
                if member.issym() or member.islnk():
                    raise ArchiveError(f"archive member {name!r} is a link; links are not accepted")
                if member.isdev() or member.isfifo():
                    raise ArchiveError(f"archive member {name!r} is a device or fifo")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ArchiveError(f"archive member {name!r} has an unsupported type")
                unpacked += member.size
                files += 1
                if unpacked > max_unpacked:
                    raise ArchiveError(
                        f"archive unpacks to more than {max_unpacked} bytes", code="payload_too_large"
                    )
                fh = tar.extractfile(member)
                content = fh.read() if fh else b""
                norm = path.as_posix().removeprefix("./")
                digest.update(f"{norm}\0{member.mode & 0o111 != 0}\0{len(content)}\0".encode())
                digest.update(content)
                if norm in CONFIG_FILES and (config_text is None or norm == "crewyard.toml"):
                    config_text = (norm, content.decode("utf-8", errors="replace"))
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"upload is not a valid gzip tarball: {exc}") from None
    if config_text is None:
        raise ArchiveError("archive has no crewyard.toml or crewship.toml at its root", code="invalid_config")
    try:
        config = parse(config_text[1], config_text[0])
    except CrewConfigError as exc:
        raise ArchiveError(str(exc), code="invalid_config") from None
    return CheckedArchive(
        digest="sha256-" + digest.hexdigest(),
        size=len(data),
        unpacked_size=unpacked,
        files=files,
        config=config,
    )


def extract(data: bytes, dest: Path) -> None:
    """Unpack a checked archive into ``dest`` (atomically: a half-extracted tree never shows)."""
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(tmp, filter="data")
    try:
        tmp.rename(dest)
    except OSError:
        if not dest.exists():
            raise
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
