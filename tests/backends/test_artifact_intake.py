"""Taking artifacts in: only regular files, only inside the folder, only within the size caps."""

from __future__ import annotations

import io
import itertools
import os
import tarfile
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

from crewyard.runner.backends._artifacts import extract_tar_stream, safe_relative


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> list[bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return [raw[i : i + 1000] for i in range(0, len(raw), 1000)]  # arrives in chunks, like the engine's


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_member_names_may_not_leave_the_folder() -> None:
    assert str(safe_relative("./a/b.txt")) == "a/b.txt"
    for name in ("/etc/passwd", "../x", "a/../../x", "a/..", ".", ""):
        assert safe_relative(name) is None, name


def test_only_regular_files_inside_the_caps_are_extracted(tmp_path: Path) -> None:
    chunks = _tar(
        (_file("artifacts/report.md"), b"# report"),
        (_file("artifacts/sub/data.json", mode=0o4755), b"{}"),
        (_file("artifacts/../../escape.txt"), b"no"),
        (_special("artifacts/passwd", tarfile.SYMTYPE, "/etc/passwd"), None),
        (_special("artifacts/hard", tarfile.LNKTYPE, "artifacts/report.md"), None),
        (_special("artifacts/dev", tarfile.CHRTYPE), None),
        (_file("artifacts/big.bin"), b"x" * 5000),
        (_file("artifacts/fill-1.bin"), b"y" * 900),
        (_file("artifacts/fill-2.bin"), b"z" * 900),
    )
    skipped = dict(
        extract_tar_stream(chunks, tmp_path / "out", max_file=1000, max_total=1000, strip="artifacts")
    )

    files = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert files == {"report.md", "sub/data.json", "fill-1.bin"}
    assert (tmp_path / "out" / "report.md").read_bytes() == b"# report"
    assert os.stat(tmp_path / "out" / "sub" / "data.json").st_mode & 0o7777 == 0o644  # no setuid carried over
    assert not (tmp_path / "escape.txt").exists()
    assert set(skipped) == {"artifacts/../../escape.txt", "passwd", "hard", "dev", "big.bin", "fill-2.bin"}
    assert "symlink" in skipped["passwd"] and "hard link" in skipped["hard"]
    assert "per-file limit" in skipped["big.bin"] and "total" in skipped["fill-2.bin"]


# An engine's archive is trusted no more than the crew that filled the folder: whatever its
# headers claim, reading it stays within bounds and writes nothing outside the target folder.


def _header(name: str, kind: bytes, size: int, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info.tobuf(tarfile.GNU_FORMAT)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _collect(tmp_path: Path, chunks: Iterable[bytes]) -> tuple[dict[str, str], set[str], int]:
    tracemalloc.start()
    try:
        skipped = dict(extract_tar_stream(chunks, tmp_path / "out", max_file=1000, max_total=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    files = {str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()}
    return skipped, files, peak


def test_links_devices_and_names_that_leave_the_folder_are_reported_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    stream = b"".join(
        [
            _header("link", tarfile.SYMTYPE, 0, str(outside)),
            _header("link/planted.txt", tarfile.REGTYPE, 2) + _pad(b"no"),  # through the link? never
            _header("hard", tarfile.LNKTYPE, 0, "/etc/passwd"),
            _header("fifo", tarfile.FIFOTYPE, 0),
            _header("block", tarfile.BLKTYPE, 0),
            _header(str(outside / "absolute.txt"), tarfile.REGTYPE, 2) + _pad(b"no"),
            _header("../dotdot.txt", tarfile.REGTYPE, 2) + _pad(b"no"),
            _header("ok.txt", tarfile.REGTYPE, 2) + _pad(b"ok"),
            bytes(1024),
        ]
    )
    skipped, files, _ = _collect(tmp_path, [stream[i : i + 700] for i in range(0, len(stream), 700)])
    assert files == {"ok.txt", "link/planted.txt"}  # a folder named "link" now, made here
    assert not list(outside.iterdir()) and not (tmp_path / "dotdot.txt").exists()
    assert "symlink" in skipped["link"] and "hard link" in skipped["hard"]
    assert "special file" in skipped["fifo"] and "special file" in skipped["block"]
    assert "leaves" in skipped[str(outside / "absolute.txt")] and "leaves" in skipped["../dotdot.txt"]


def test_headers_that_claim_huge_sizes_end_the_stream_without_reading_them(tmp_path: Path) -> None:
    cases = {
        "file": _header("huge.bin", tarfile.REGTYPE, 1 << 40),
        "pax": _header("././@PaxHeader", tarfile.XHDTYPE, 1 << 30),
        "long name": _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 1 << 30),
    }
    for what, header in cases.items():
        endless = itertools.chain([_header("first.txt", tarfile.REGTYPE, 2) + _pad(b"ok"), header],
                                  itertools.repeat(b"A" * 65536))  # fmt: skip
        skipped, files, peak = _collect(tmp_path / what.replace(" ", "-"), endless)
        assert files == {"first.txt"}, what
        assert "(the rest)" in skipped and "limit" in skipped["(the rest)"], (what, skipped)
        assert peak < 32 << 20, (what, peak)


def test_a_quadratic_pax_header_and_endless_entries_are_cut_short(tmp_path: Path) -> None:
    digits = b"1" * 128_000  # the length field CPython's tarfile before 3.11.10 parsed in quadratic time
    pax = _pad(digits + b" path=x\n")
    bomb = _header("././@PaxHeader", tarfile.XHDTYPE, len(digits) + 8) + pax
    skipped, files, _ = _collect(tmp_path / "pax", [bomb, _header("x", tarfile.REGTYPE, 0)])
    assert files == set() and "malformed pax header" in skipped["(the rest)"]

    produced = 0

    def endless_folders() -> Iterator[bytes]:
        nonlocal produced
        folder = _header("d", tarfile.DIRTYPE, 0)
        while True:
            produced += 1
            yield folder

    skipped, files, _ = _collect(tmp_path / "many", endless_folders())
    assert "more than 20000 entries" in skipped["(the rest)"]
    assert files == set() and produced < 20_100  # stopped right there, not drained
