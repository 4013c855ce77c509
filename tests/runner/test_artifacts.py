"""Collecting artifacts from a folder untrusted code wrote: no link followed at any level, a late
swap cannot redirect a read, and everything left out is reported."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from crewyard.core.bounds import MAX_ARTIFACT_NAME
from crewyard.core.events import ArtifactStored, Log
from crewyard.runner import artifacts
from crewyard.runner.artifacts import MAX_DEPTH, MAX_REPORTED, walk


class Taker:
    """A ``take`` that reads each file through the descriptor it is given."""

    def __init__(self, before_read: dict[str, Path] | None = None, secret: Path | None = None) -> None:
        self.read: dict[str, bytes] = {}
        self._swap, self._secret = before_read or {}, secret

    def __call__(self, name: str, fd: int, st: os.stat_result) -> ArtifactStored:
        if name in self._swap:  # the crew's late swap: the file becomes a link to a secret
            path = self._swap[name]
            path.unlink()
            path.symlink_to(self._secret)  # type: ignore[arg-type]
        self.read[name] = os.pread(fd, 1 << 20, 0)
        return ArtifactStored(name=name, size=st.st_size, content_type="", sha256="0" * 64)


def test_only_regular_files_are_taken_and_the_rest_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    (out / "sub").mkdir(parents=True)
    (out / "ok.txt").write_text("ok")
    (out / "sub" / "nested.txt").write_text("nested")
    (out / "passwd").symlink_to("/etc/passwd")
    (out / "etc").symlink_to("/etc")
    (out / "sub" / "up").symlink_to("../..")
    os.mkfifo(out / "fifo")
    (tmp_path / "outside.txt").write_text("secret")
    os.link(tmp_path / "outside.txt", out / "hardlinked.txt")
    (out / "huge.bin").write_bytes(b"x" * 2000)
    take = Taker()

    collected = walk(out, take, max_file=1000, max_total=10_000)

    assert take.read == {"ok.txt": b"ok", "sub/nested.txt": b"nested"}
    assert [s.name for s in collected.stored] == ["ok.txt", "sub/nested.txt"]
    skipped = {line.split(":")[0]: line for line in collected.skipped}
    assert set(skipped) == {"passwd", "etc", "sub/up", "fifo", "hardlinked.txt"}
    assert "symbolic link" in skipped["etc"] and "hard link" in skipped["hardlinked.txt"]
    assert collected.over_limit == ["huge.bin is 2000 bytes, over the 1000-byte limit per artifact"]


def test_a_file_swapped_for_a_link_after_it_was_checked_is_still_the_file_read(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    (out / "report.md").write_text("# the real report")
    take = Taker(before_read={"report.md": out / "report.md"}, secret=secret)

    collected = walk(out, take, max_file=1000, max_total=10_000)

    assert take.read == {"report.md": b"# the real report"}
    assert (out / "report.md").is_symlink(), "the swap did happen"
    assert [s.name for s in collected.stored] == ["report.md"]


def test_a_folder_swapped_for_a_link_is_not_entered(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key").write_text("secret")
    (out / "sub").symlink_to(tmp_path / "private")
    link_root = tmp_path / "root-link"
    link_root.symlink_to(tmp_path / "private")
    take = Taker()

    collected = walk(out, take, max_file=1000, max_total=10_000)
    replaced = walk(link_root, take, max_file=1000, max_total=10_000)

    assert take.read == {} and collected.stored == [] and replaced.stored == []
    assert collected.skipped == ["sub: symbolic link not followed"]
    assert "cannot be read safely" in replaced.skipped[0]


def test_folders_nested_too_deep_are_reported_not_walked(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    deep = out.joinpath(*["d"] * (MAX_DEPTH + 3))
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("deep")
    (out / "top.txt").write_text("top")
    take = Taker()

    collected = walk(out, take, max_file=1000, max_total=10_000)

    assert take.read == {"top.txt": b"top"}
    assert len(collected.skipped) == 1 and "nested deeper than" in collected.skipped[0]


def test_what_is_left_out_is_reported_in_a_bounded_number_of_short_lines(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "artifacts"
    deep = out / ("n" * 250) / ("m" * 250)
    deep.mkdir(parents=True)
    for i in range(MAX_REPORTED + 50):
        (deep / f"{i:04d}-{'l' * 200}").symlink_to("/etc/passwd")
    (out / "kept.txt").write_text("kept")

    collected = walk(out, Taker(), max_file=1000, max_total=10_000)

    assert [s.name for s in collected.stored] == ["kept.txt"]
    assert len(collected.skipped) == MAX_REPORTED + 1
    assert collected.skipped[-1] == "… and 50 more entries left out"
    assert all(len(line) < 400 for line in collected.skipped), max(map(len, collected.skipped))

    monkeypatch.setattr(artifacts, "MAX_ENTRIES", 20)  # a folder of more entries is not walked on
    read: list[int] = []
    names = artifacts._names

    def counted(fd: int, most: int) -> list[str]:
        got = names(fd, most)
        read.append(len(got))
        return got

    monkeypatch.setattr(artifacts, "_names", counted)
    few = walk(out, Taker(), max_file=1000, max_total=10_000)
    assert "more than 20 entries: the rest were not looked at" in few.skipped
    # A folder of 150 names read no further than the walk looks (os.listdir read them all).
    assert max(read) <= 21 and len(os.listdir(deep)) == MAX_REPORTED + 50, read


def test_names_an_artifact_event_would_refuse_are_not_read_and_are_reported_escaped(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    raw = os.fsencode(out)
    for name in (b"bad-\xff-utf8.txt", b"bell\x07.txt", b"line\nbreak.txt"):
        with open(raw + b"/" + name, "wb") as f:
            f.write(b"never stored")
    os.mkdir(raw + b"/dir-\xfe")
    with open(raw + b"/dir-\xfe/inside.txt", "wb") as f:
        f.write(b"never stored either")
    (out / "caf\u00e9.txt").write_text("fine")
    take = Taker()

    collected = walk(out, take, max_file=1000, max_total=10_000)

    assert take.read == {"caf\u00e9.txt": b"fine"}  # the others were never opened for reading
    assert sorted(collected.skipped) == [
        "bad-\\xff-utf8.txt: not collected: its name is not UTF-8",
        "bell\\x07.txt: not collected: its name holds control characters",
        "dir-\\xfe: not collected: its name is not UTF-8",
        "line\\x0abreak.txt: not collected: its name holds control characters",
    ]
    for line in collected.skipped:  # each report line is a log event the stream accepts
        encoded = msgspec.json.encode(Log(message=line, level="warning", stream="runner", timestamp="t"))
        assert msgspec.json.decode(encoded, type=Log).message == line


def test_a_path_longer_than_an_artifact_name_may_be_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(MAX_ARTIFACT_NAME // 200 + 1):  # deeper than a path the kernel takes whole
        os.mkdir("d" * 200, dir_fd=fd)
        fd, parent = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    file = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    os.write(file, b"too deep a name")
    os.close(file)
    os.close(fd)

    collected = walk(out, Taker(), max_file=1000, max_total=10_000)

    assert collected.stored == []
    assert any(f"its path is longer than {MAX_ARTIFACT_NAME} characters" in s for s in collected.skipped)
