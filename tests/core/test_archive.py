"""The bounded tar reader: every real-world format reads as tarfile reads it, every bomb is refused
early (naming the limit) and quickly, without reading a member into memory whole."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from crewyard.archive import ArchiveError, ArchiveLimits
from crewyard.packaging import check, extract
from crewyard.testing import bombs
from crewyard.testing.bombs import CONFIG, config_member, member, pad

LONG = "deep/" * 30 + "n" * 120 + ".py"  # over 100 bytes: needs pax or GNU long names
FILES = {
    "crewyard.toml": CONFIG,
    "crew.py": b"def run(i):\n    return i\n",
    LONG: b"x" * 70_000,
    "ü/ñ.txt": b"",
}


def _tar(fmt: int, files: dict[str, bytes] = FILES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".py") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _reference_digest(data: bytes) -> str:
    """The source digest as defined (names, executable bit, sizes, bytes), read with tarfile."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar:
            if m.isfile():
                content = tar.extractfile(m).read()  # type: ignore[union-attr]
                name = m.name.removeprefix("./")
                digest.update(f"{name}\0{m.mode & 0o111 != 0}\0{len(content)}\0".encode())
                digest.update(content)
    return "sha256-" + digest.hexdigest()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_python_formats_read_like_tarfile(fmt, tmp_path):
    files = FILES if fmt != tarfile.USTAR_FORMAT else {k: v for k, v in FILES.items() if k != LONG}
    data = _tar(fmt, files)
    checked = check(data)
    assert checked.digest == _reference_digest(data)
    assert checked.files == len(files)
    extract(data, tmp_path / "out", digest=checked.digest)
    for name, content in files.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    assert os.access(tmp_path / "out" / "crew.py", os.X_OK)


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar", "v7"])
def test_archives_from_the_tar_command_read_like_tarfile(fmt, tmp_path):
    src = tmp_path / "src"
    files = FILES if fmt in ("gnu", "pax") else {"crewyard.toml": CONFIG, "crew.py": b"x"}
    for name, content in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(content)
    out = tmp_path / "crew.tar.gz"
    subprocess.run(["tar", f"--format={fmt}", "-czf", str(out), "-C", str(src), "."], check=True)
    data = out.read_bytes()
    assert check(out).digest == _reference_digest(data)


def _gz(*parts: bytes, level: int = 6) -> bytes:
    return gzip.compress(b"".join(parts), compresslevel=level)


def _pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))  # the length counts its own digits
    return str(length).encode() + body


def test_a_pax_header_with_a_huge_length_field_is_refused_at_once():
    data = bombs.pax_digits(128_000)  # the quadratic-regex attack on tarfile
    started = time.process_time()
    with pytest.raises(ArchiveError, match="malformed pax header"):
        check(data)
    assert time.process_time() - started < 5  # linear: milliseconds; the regex took seconds


def test_a_pax_header_expanding_past_its_limit_is_413_before_it_is_read():
    data = bombs.pax_expanding(1 << 30)
    assert len(data) < 2 << 20
    with pytest.raises(ArchiveError, match=r"pax header .* over the") as exc:
        check(data)
    assert exc.value.code == "payload_too_large"


def test_headers_count_against_the_unpacked_limit():
    records = b"".join(_pax_record(f"comment{i}", b"y" * 900) for i in range(900))  # ~820 KiB
    members = [member(b"pax", b"x", len(records)) + pad(records) + config_member()]
    data = _gz(*members)
    with pytest.raises(ArchiveError, match="unpacks to more than the 500000-byte limit"):
        check(data, ArchiveLimits(unpacked_bytes=500_000))
    assert check(data).files == 1


def test_one_huge_member_is_refused_from_its_header():
    data = bombs.huge_member(450 << 20)
    assert len(data) < 1 << 20
    started = time.process_time()
    with pytest.raises(ArchiveError, match="over the 104857600-byte limit per file"):
        check(data)
    assert time.process_time() - started < 2  # refused from the header, the zeros never inflated


def test_a_member_is_streamed_never_held_whole():
    size = 99 << 20
    data = bombs.unpacks_to(99)
    tracemalloc.start()
    try:
        checked = check(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert checked.unpacked_size == size + len(CONFIG)
    assert peak < 4 * 1024 * 1024, peak  # a few chunks, never the member


def test_many_small_files_stop_at_the_entry_limit():
    with pytest.raises(ArchiveError, match="more than 10000 entries") as exc:
        check(bombs.many_files(12_000))
    assert exc.value.code == "payload_too_large"


def test_a_gzip_bomb_stops_at_the_unpacked_limit():
    with pytest.raises(ArchiveError, match="unpacks to more than the 157286400-byte limit") as exc:
        check(bombs.unpacks_to(198), ArchiveLimits(unpacked_bytes=150 << 20))
    assert exc.value.code == "payload_too_large"


def test_the_compressed_size_is_bounded():
    with pytest.raises(ArchiveError, match="upload is larger than the 100-byte limit"):
        check(_tar(tarfile.PAX_FORMAT), ArchiveLimits(compressed_bytes=100))


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([member(b"a\nb", b"0", 0)], "control character"),
        ([member(b"\xff\xfe", b"0", 0)], "not UTF-8"),
        ([member(b"x", b"0", 0, prefix=b"../..")], "outside"),
        ([member(b"sparse", b"S", 0)], "unsupported type"),
        ([member(b"fifo", b"6", 0)], "device or fifo"),
        ([member(b"hard", b"1", 0)], "link"),
        ([member(b"crew.py", b"0", 0), member(b"crew.py", b"0", 0)], "appears twice"),
        ([member(b"pkg", b"0", 0), member(b"pkg/mod.py", b"0", 0)], "which is a file"),
        ([member(b"pkg/mod.py", b"0", 0), member(b"pkg", b"0", 0)], "both a file and a folder"),
        ([member(b"L", b"L", 7) + pad(b"../evil") + member(b"innocent", b"0", 0)], "outside"),
    ],
)
def test_hostile_members_are_refused(members, needle):
    with pytest.raises(ArchiveError, match=needle):
        check(_gz(config_member(), *members))


def test_a_broken_header_or_a_truncated_stream_is_invalid_not_a_crash():
    broken = bytearray(member(b"x", b"0", 0))
    broken[0] ^= 1  # checksum no longer matches
    with pytest.raises(ArchiveError, match="checksum"):
        check(_gz(config_member(), bytes(broken)))
    with pytest.raises(ArchiveError, match="ends in the middle"):
        check(_gz(config_member())[:-20])
    with pytest.raises(ArchiveError, match="data after the end"):
        check(_gz(config_member()) + b"trailing garbage")


def test_extract_refuses_contents_that_do_not_match_their_digest(tmp_path: Path):
    data = _tar(tarfile.PAX_FORMAT)
    with pytest.raises(ArchiveError, match="do not match"):
        extract(data, tmp_path / "out", digest="sha256-" + "0" * 64)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-extracted left behind
