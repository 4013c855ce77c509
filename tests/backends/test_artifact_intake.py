"""Taking artifacts in: only regular files, only inside the folder, only within the size caps."""

from __future__ import annotations

import io
import os
import tarfile
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
