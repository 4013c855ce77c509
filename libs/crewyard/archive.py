"""Reading a tarball from a hostile source in one bounded, streaming pass.

``tarfile`` is not used for reading: before 3.11.10/3.12.6 its pax header parsing is quadratic (a
414-byte upload froze the platform for seconds), it keeps whole pax headers in memory however
large, and it knows nothing of our limits. Here every header is parsed by hand with its size
checked before a byte of it is read; pax records are walked once, left to right.

Bounds, all checked while reading (never after): compressed bytes read, unpacked bytes (every
byte that leaves gzip — headers, pax and GNU long-name data, file data, padding), size per file,
number of entries, size per header. Each step does bounded work — at most ``_OUT`` bytes out of
zlib per call (which releases the GIL while inflating), hashes and writes in chunks — so a
thread running this never holds the interpreter for long, and memory stays at a few chunks.

Two readers share the parsing: uploads (gzip, strict: a link, a device or a bad name refuses the
whole archive) and a container engine's uncompressed archive of a run's artifacts
(:meth:`TarReader.plain`, lenient: such members are yielded for the caller to skip and report,
since a crew may well leave a symlink in its folder; every bound still ends the stream).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import msgspec

from crewyard.errors import CrewyardError

_BLOCK = 512
_IN = 64 * 1024  # compressed bytes read per step
_OUT = 256 * 1024  # most bytes inflated per step
_CHUNK = _OUT  # most file content handed out per step (whole inflated chunks: no copies)
#: pax and GNU long-name headers carry names and metadata: anything bigger is an attack.
MAX_HEADER_BYTES = 1024 * 1024
#: A member's path, in bytes. It is unpacked under the platform's own folders (the source cache's
#: ``<digest>.tmp…/``, a sandbox's mount point), and the whole must stay under the kernel's 4,096.
MAX_PATH = 1024
MAX_PATH_PART = 255
_MAX_GZIP_MEMBERS = 64
_MAX_PAX_RECORDS = 1000
_ZERO = bytes(_BLOCK)


class ArchiveError(CrewyardError, ValueError):
    """An archive that is not acceptable; ``code`` is the API error code (``payload_too_large``
    for a limit, answered 413; ``invalid_archive`` otherwise, 400)."""

    def __init__(self, message: str, code: str = "invalid_archive") -> None:
        super().__init__(message)
        self.code = code


class ArchiveLimits(msgspec.Struct, frozen=True, kw_only=True):
    compressed_bytes: int = 50 * 1024 * 1024
    #: Every byte out of gzip, headers included.
    unpacked_bytes: int = 500 * 1024 * 1024
    file_bytes: int = 100 * 1024 * 1024
    #: Files and folders.
    entries: int = 10_000


class Member(msgspec.Struct, frozen=True):
    path: str  # normalised, relative, "/"-separated
    is_dir: bool
    size: int
    executable: bool
    #: "file" or "dir"; a lenient reader (:meth:`TarReader.plain`) also yields "symlink",
    #: "hard link", "special file" and "invalid" (``path`` is then the raw name, ``problem`` why).
    kind: str = "file"
    problem: str = ""


def _too_large(message: str) -> ArchiveError:
    return ArchiveError(message, code="payload_too_large")


class _Stream:
    """Bytes of a tar stream, handed out from ``chunk[pos:]``; a subclass's ``_step`` makes the
    next chunk (or sets ``done``), counting ``made`` against the limits."""

    #: What a stream that ends inside the archive is called.
    ends_early = "not a valid tar archive: it ends in the middle"
    chunk: bytes
    pos: int
    made: int
    done: bool

    def _step(self) -> None:
        raise NotImplementedError

    @property
    def consumed(self) -> int:
        """Bytes handed out so far (``made`` also counts what was made ahead)."""
        return self.made - (len(self.chunk) - self.pos)

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one); ArchiveError at the end of the stream."""
        while self.pos >= len(self.chunk):
            if self.done:
                raise ArchiveError(self.ends_early)
            self._step()
        start, self.pos = self.pos, min(self.pos + limit, len(self.chunk))
        return self.chunk[start : self.pos]

    def read(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            part = self.read_some(left)
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def at_end(self) -> bool:
        while self.pos >= len(self.chunk) and not self.done:
            self._step()
        return self.pos >= len(self.chunk)


class _Inflater(_Stream):
    """Bytes out of a gzip stream, counted against the limits as they come."""

    ends_early = "upload is not a valid tar archive: it ends in the middle"

    def __init__(self, fh: BinaryIO, limits: ArchiveLimits) -> None:
        self.fh, self.limits = fh, limits
        self.z = zlib.decompressobj(31)
        self.chunk, self.pos = b"", 0  # inflated bytes not handed out yet: chunk[pos:]
        self.read_in = self.made = 0
        self.members = 1
        self.done = False

    def _input(self) -> bytes:
        data = self.fh.read(_IN)
        self.read_in += len(data)
        if self.read_in > self.limits.compressed_bytes:
            raise _too_large(f"upload is larger than the {self.limits.compressed_bytes}-byte limit")
        return data

    def _inflate(self, data: bytes) -> None:
        try:
            out = self.z.decompress(data, _OUT)
        except zlib.error as exc:
            raise ArchiveError(f"upload is not a valid gzip stream: {exc}") from None
        self.made += len(out)
        if self.made > self.limits.unpacked_bytes:
            raise _too_large(f"archive unpacks to more than the {self.limits.unpacked_bytes}-byte limit")
        if out:  # only ever called once the previous chunk is used up
            self.chunk, self.pos = out, 0

    def _step(self) -> None:
        """One bounded step: inflate at most ``_OUT`` bytes, or move to the next gzip member."""
        if self.z.eof:
            self._next_member()
            return
        data = self.z.unconsumed_tail or self._input()
        if not data:
            raise ArchiveError("upload is not a valid gzip tarball: it ends in the middle")
        self._inflate(data)

    def _next_member(self) -> None:
        # Like gzip itself: zero padding after a member is fine, another member is read on, and
        # anything else is an error.
        rest = self.z.unused_data.lstrip(b"\0")
        while not rest:
            more = self._input()
            if not more:
                self.done = True
                return
            rest = more.lstrip(b"\0")
        if len(rest) < 2:
            rest += self._input()
        if not rest.startswith(b"\x1f\x8b"):
            raise ArchiveError("upload has data after the end of its gzip stream")
        self.members += 1
        if self.members > _MAX_GZIP_MEMBERS:
            raise ArchiveError(f"upload has more than {_MAX_GZIP_MEMBERS} gzip members")
        self.z = zlib.decompressobj(31)
        self._inflate(rest)


class _Plain(_Stream):
    """Bytes of an uncompressed tar stream (an iterator of chunks, e.g. a container engine's),
    counted against ``unpacked_bytes`` as they come."""

    def __init__(self, chunks: Iterable[bytes], limits: ArchiveLimits) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self.limits = limits
        self.chunk, self.pos = b"", 0
        self.made = 0
        self.done = False

    def _step(self) -> None:
        data = next(self._chunks, None)
        if data is None:
            self.done = True
            return
        self.made += len(data)
        if self.made > self.limits.unpacked_bytes:
            raise _too_large(f"archive is larger than the {self.limits.unpacked_bytes}-byte limit")
        self.chunk, self.pos = bytes(data), 0


def _number(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for big values
        if field[0] == 0xFF:
            raise ArchiveError(f"archive header has a negative {what}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if text.strip(b"01234567"):
        raise ArchiveError(f"upload is not a valid tar archive (bad {what} field)")
    return int(text, 8)


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored == unsigned:
        return True
    signed = (
        unsigned - 256 * sum(1 for b in block if b > 127) + 256 * sum(1 for b in block[148:156] if b > 127)
    )
    return stored == signed


def _pax(data: bytes) -> dict[str, bytes]:
    """pax records ``"<len> <key>=<value>\\n"``, in one left-to-right pass."""
    out: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end and data[pos] != 0:
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise ArchiveError("archive has a malformed pax header")
        stop = pos + int(digits)
        if stop <= space + 1 or stop > end or data[stop - 1] != 0x0A:
            raise ArchiveError("archive has a malformed pax header")
        key, eq, value = data[space + 1 : stop - 1].partition(b"=")
        if not eq or not key:
            raise ArchiveError("archive has a malformed pax header")
        out[key.decode("utf-8", "replace")] = value
        if len(out) > _MAX_PAX_RECORDS:
            raise ArchiveError(f"archive has a pax header with more than {_MAX_PAX_RECORDS} records")
        pos = stop
    return out


def _clean(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"archive member {raw[:200]!r} has a name that is not UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ArchiveError(f"archive member {name[:200]!r} has a control character in its name")
    if name.startswith("/"):
        raise ArchiveError(f"archive member {name[:200]!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name[:200]!r} points outside the crew folder")
    path = "/".join(parts)
    if len(path.encode()) > MAX_PATH or any(len(p.encode()) > MAX_PATH_PART for p in parts):
        raise ArchiveError(f"archive member {name[:200]!r} has a name longer than a file system allows")
    return path


class TarReader:
    """``members()`` yields each file and folder; ``chunks()`` streams the current file's bytes
    (whatever a caller does not read is skipped before the next member)."""

    def __init__(self, fh: BinaryIO | None, limits: ArchiveLimits, *, _source: _Plain | None = None) -> None:
        self.limits = limits
        self._in: _Inflater | _Plain
        if _source is not None:
            self._in = _source
        else:
            assert fh is not None
            self._in = _Inflater(fh, limits)
        self._left = 0  # content bytes of the current member not read yet
        self._pad = 0
        self._strict = _source is None

    @classmethod
    def plain(cls, chunks: Iterable[bytes], limits: ArchiveLimits) -> TarReader:
        """A lenient reader of an uncompressed stream: links, special files and unacceptable names
        are yielded (with their ``kind`` and ``problem``) for the caller to skip and report, instead
        of ending the archive; every bound still holds, the per-file size excepted (the caller
        decides, the data is skipped when it is not read)."""
        return cls(None, limits, _source=_Plain(chunks, limits))

    def _odd(self, name: str, size: int, kind: str, problem: str) -> Member:
        """A member the lenient reader yields and skips (strict readers raise before this)."""
        self._left, self._pad = size, -size % _BLOCK
        return Member(name[:300], False, 0, False, kind=kind, problem=problem)

    def _header_data(self, size: int, what: str) -> bytes:
        if size > MAX_HEADER_BYTES:
            raise _too_large(f"archive has a {what} of {size} bytes, over the {MAX_HEADER_BYTES}-byte limit")
        data = self._in.read(size)
        self._in.read(-size % _BLOCK)
        return data

    def members(self) -> Iterator[Member]:
        entries = extra = 0
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        while True:
            self._skip_rest()
            if self._in.at_end():
                return  # no end-of-archive blocks: tolerated, as tar itself does
            block = self._in.read(_BLOCK)
            if block == _ZERO:
                return
            if not _checksum_ok(block):
                raise ArchiveError("upload is not a valid tar archive (header checksum mismatch)")
            kind = block[156:157]
            size = _number(block[124:136], "size")
            if kind in (b"x", b"g", b"L", b"K"):
                extra += 1
                if extra > 2 * self.limits.entries + 16:
                    raise _too_large(f"archive has more than {self.limits.entries} entries")
                data = self._header_data(size, "pax header" if kind in b"xg" else "long-name header")
                if kind == b"x":
                    pax = _pax(data)
                elif kind == b"g":
                    _pax(data)  # global defaults: checked, not needed
                elif kind == b"L":
                    long_name = data.split(b"\0", 1)[0]
                continue
            name = long_name if long_name is not None else block[:100].split(b"\0", 1)[0]
            if long_name is None and block[257:263] == b"ustar\0" and block[345:500].strip(b"\0"):
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name  # the ustar prefix field
            if "path" in pax:
                name = pax["path"]
            if any(k.startswith("GNU.sparse") for k in pax):
                raise ArchiveError(f"archive member {name[:200]!r} is a sparse file; not accepted")
            if "size" in pax:
                if not pax["size"].isdigit() or len(pax["size"]) > 20:
                    raise ArchiveError("archive has a malformed pax header (size)")
                size = int(pax["size"])
            pax, long_name = {}, None
            entries += 1
            if entries > self.limits.entries:
                raise _too_large(f"archive has more than {self.limits.entries} entries (files and folders)")
            try:
                path = _clean(name)
            except ArchiveError as exc:
                if self._strict:
                    raise
                yield self._odd(name.decode("utf-8", "replace"), size, "invalid", str(exc))
                continue
            if kind in (b"1", b"2"):
                if self._strict:
                    raise ArchiveError(f"archive member {path!r} is a link; links are not accepted")
                yield self._odd(path, size, "symlink" if kind == b"2" else "hard link", "a link")
                continue
            if kind == b"5":
                self._left, self._pad = size, -size % _BLOCK
                yield Member(path, True, 0, False, kind="dir")
                continue
            if kind not in (b"0", b"\0", b"7"):
                if self._strict:
                    what = "is a device or fifo" if kind in (b"3", b"4", b"6") else "has an unsupported type"
                    raise ArchiveError(f"archive member {path!r} {what}")
                yield self._odd(path, size, "special file", "not a regular file")
                continue
            if not path:
                raise ArchiveError("archive has a file without a name")
            if size > self.limits.file_bytes and self._strict:
                limit = self.limits.file_bytes
                raise _too_large(
                    f"archive member {path!r} is {size} bytes, over the {limit}-byte limit per file"
                )
            if self._in.consumed + size > self.limits.unpacked_bytes:  # fail before reading it
                raise _too_large(f"archive unpacks to more than the {self.limits.unpacked_bytes}-byte limit")
            self._left, self._pad = size, -size % _BLOCK
            mode = _number(block[100:108], "mode")
            yield Member(path, False, size, bool(mode & 0o111))

    def chunks(self) -> Iterator[bytes]:
        while self._left:
            data = self._in.read_some(min(self._left, _CHUNK))
            self._left -= len(data)
            yield data

    def _skip_rest(self) -> None:
        for _ in self.chunks():
            pass
        if self._pad:
            self._in.read(self._pad)
            self._pad = 0
