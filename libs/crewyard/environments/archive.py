"""Environments as files: made safe after a build, packed for the object store, unpacked by runners.

What the sandbox left is the crew's: before the host touches it, :func:`sanitize` removes
anything that is not a regular file, folder or symbolic link and clears set-uid/set-gid/sticky
bits and group/other write bits (inside the sandbox uid 1000 is root outside, so a set-uid file
it made would be a set-uid root file on the host), and refuses an environment over the disk
limits (bytes at their apparent size, files and folders, depth: :mod:`.usage`), which would be
packed and then unpacked whole on every runner. No link is ever followed, the environment
folder itself included: one the build swapped for a link to a host path is refused. The archive
is a gzip tarball (fast level: environments are large and built once), checked by sha256 before
it is unpacked, and unpacked with tarfile's ``tar`` filter plus our own refusal of links that are
hard links or members other than files, folders and symlinks, and of more bytes or members than
an environment may have.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

from crewyard import trees
from crewyard.errors import CrewyardError

from . import usage
from ._base import BuildFailed


class ArchiveCorrupt(CrewyardError):
    """An environment archive whose bytes are not the ones the builder recorded."""


def real_folder(root: Path) -> None:
    """BuildFailed unless ``root`` is a folder itself, not a symbolic link (to anywhere on the host)
    or anything else the build left in its place: the host handles it as root, so it must never
    follow a link out of what the build made."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise BuildFailed(f"the build left no environment folder ({root.name})") from None
    if not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise BuildFailed(f"the build replaced its environment folder ({root.name}) with {what}: refused")


def sanitize(root: Path, most_bytes: int, most_entries: int) -> int:
    """Make a freshly built environment safe to handle on the host; returns its size in bytes
    (apparent: a sparse file is packed, and unpacked on every runner, at its full size).

    BuildFailed when it is over ``most_bytes`` or ``most_entries`` files and folders, or nests
    folders past :data:`.usage.MAX_DEPTH`: it would be packed and unpacked whole on every runner.
    Links are never followed, the top one included (:func:`real_folder`)."""
    real_folder(root)
    total = count = 0
    seen: set[tuple[int, int]] = set()
    try:
        # Strict: what the walk could not read would be packed as it is (set-uid bits, devices).
        for parent, name, st in usage.walk(root, strict=True):
            count += 1
            if count > most_entries:
                raise BuildFailed(
                    f"the environment holds more than {most_entries:,} files and folders (file count limit)"
                )
            if stat.S_ISLNK(st.st_mode):
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                os.unlink(name, dir_fd=parent)  # fifos, sockets, devices have no place in an environment
                continue
            mode = stat.S_IMODE(st.st_mode)
            safe = (mode & 0o755) | (0o700 if stat.S_ISDIR(st.st_mode) else 0o600)
            if mode != safe:
                os.chmod(name, safe, dir_fd=parent)
            if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue  # packed once (a hard link after the first)
                seen.add((st.st_dev, st.st_ino))
            total += usage.apparent_size(st)
            if total > most_bytes:
                raise BuildFailed(
                    f"the environment holds more than {most_bytes >> 20} MiB (disk limit; a sparse file"
                    " counts at its full size)"
                )
    except trees.TooDeep as exc:
        raise BuildFailed(f"the environment holds {exc} (depth limit)") from None
    except OSError as exc:
        raise BuildFailed(f"the environment cannot be read whole ({exc.strerror}): not published") from None
    return total


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pack(root: Path, dest: Path) -> str:
    """A tarball of ``root``'s contents (links kept as links, ``root`` itself never one); returns
    its sha256."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    real_folder(root)
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(root / entry, arcname=entry, filter=normalise)
    return sha256_of(dest)


class _Bounded:
    """tarfile's ``tar`` filter, plus a refusal of links that are hard links or members other than
    files, folders and symlinks, and of an archive that unpacks to more than ``most_bytes`` or
    ``most_entries`` members (a runner's disk)."""

    def __init__(self, most_bytes: int, most_entries: int) -> None:
        self.most_bytes, self.most_entries = most_bytes, most_entries
        self.bytes = self.entries = 0

    def __call__(self, member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        if not (member.isfile() or member.isdir() or member.issym()):
            raise tarfile.FilterError(f"{member.name!r} is not a file, folder or symbolic link")
        self.entries += 1
        self.bytes += member.size if member.isfile() else 0
        if self.entries > self.most_entries:
            raise tarfile.FilterError(f"it holds more than {self.most_entries:,} files and folders")
        if self.bytes > self.most_bytes:
            raise tarfile.FilterError(f"it unpacks to more than {self.most_bytes >> 20} MiB")
        return tarfile.tar_filter(member, path)


def unpack(archive: Path, dest: Path, sha256: str, most_bytes: int, most_entries: int) -> int:
    """Check ``archive`` against ``sha256``, then unpack it into ``dest`` (which must not exist);
    returns the bytes of its files. BuildFailed past ``most_bytes`` or ``most_entries`` members."""
    actual = sha256_of(archive)
    if actual != sha256:
        raise ArchiveCorrupt(f"environment archive has sha256 {actual}, the build recorded {sha256}")
    dest.mkdir(parents=True)
    bounded = _Bounded(most_bytes, most_entries)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter=bounded)
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"environment archive cannot be unpacked: {exc}") from exc
    return bounded.bytes
