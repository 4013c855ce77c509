import gzip
import io
import tarfile
from pathlib import Path

import pytest

from crewyard.packaging import ArchiveError, ArchiveLimits, check, extract, pack

LIMITS = ArchiveLimits(unpacked_bytes=10**6)
CONFIG = b'[deployment]\nframework = "python"\nentrypoint = "crew:run"\n'


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_pack_honours_exclude_and_is_reproducible(tmp_path):
    (tmp_path / "crewyard.toml").write_bytes(CONFIG)
    (tmp_path / "crew.py").write_text("def run(i): return i\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("x")
    first, second = pack(tmp_path, ["tests"]), pack(tmp_path, ["tests"])
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
    assert sorted(names) == ["crew.py", "crewyard.toml"]
    assert check(first, limits=LIMITS).digest == check(second, limits=LIMITS).digest


def test_valid_archive_reads_config():
    checked = check(_tar([_file("crewyard.toml", CONFIG), _file("crew.py")]), limits=LIMITS)
    assert checked.config.deployments[0].entrypoint == "crew:run"
    assert checked.digest.startswith("sha256-")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("../evil.py")], "outside"),
        ([_file("/etc/evil")], "absolute"),
        ([(tarfile.TarInfo("link"), None)], None),
    ],
)
def test_hostile_members_are_refused(members, message):
    if message is None:
        link = members[0][0]
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        message = "link"
    with pytest.raises(ArchiveError, match=message):
        check(_tar([_file("crewyard.toml", CONFIG), *members]), limits=LIMITS)


def test_the_folders_a_path_implies_count_as_entries(tmp_path: Path):
    deep = "/".join(["d"] * 60)
    members = [_file("crewyard.toml", CONFIG)] + [_file(f"top{i}/{deep}/f") for i in range(3)]
    limits = ArchiveLimits(unpacked_bytes=10**6, entries=150)
    with pytest.raises(ArchiveError, match="more than 150 entries") as refused:
        check(_tar(members), limits=limits)
    assert refused.value.code == "payload_too_large"
    with pytest.raises(ArchiveError, match="more than 150 entries"):
        extract(_tar(members), tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()
    check(_tar(members[:3]), limits=limits)  # two such paths: 124 folders and files, in bounds


def test_a_path_is_refused_at_upload_when_it_could_not_be_unpacked_under_a_folder(tmp_path: Path):
    # 1,023 bytes: unpacked under a data folder of any usual depth; 1,025: refused when checked,
    # never accepted only for its build to fail on the kernel's limit of 4,096 for a whole path.
    fits, too_long = "/".join(["p" * 254] * 4) + "/abc", "/".join(["p" * 254] * 4) + "/abcde"
    assert (len(fits), len(too_long)) == (1023, 1025)
    archive = _tar([_file("crewyard.toml", CONFIG), _file(fits)])
    check(archive, limits=LIMITS)
    extract(archive, tmp_path / "out", limits=LIMITS)
    assert (tmp_path / "out" / fits).read_bytes() == b"x"
    with pytest.raises(ArchiveError, match="longer than a file system allows"):
        check(_tar([_file("crewyard.toml", CONFIG), _file(too_long)]), limits=LIMITS)


def test_hard_links_and_devices_are_refused():
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "crewyard.toml"
    with pytest.raises(ArchiveError, match="link"):
        check(_tar([_file("crewyard.toml", CONFIG), (hard, None)]), limits=LIMITS)
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(ArchiveError, match="device"):
        check(_tar([_file("crewyard.toml", CONFIG), (dev, None)]), limits=LIMITS)


def test_not_gzip_and_not_tar_and_too_big():
    with pytest.raises(ArchiveError, match="not a gzip"):
        check(b"hello world", limits=LIMITS)
    with pytest.raises(ArchiveError, match="not a valid"):
        check(gzip.compress(b"not a tar file at all" * 100), limits=LIMITS)
    big = _tar([_file("crewyard.toml", CONFIG), _file("big.bin", b"0" * 5000)])
    with pytest.raises(ArchiveError) as exc:
        check(big, limits=ArchiveLimits(unpacked_bytes=1000))
    assert exc.value.code == "payload_too_large"


def test_missing_or_invalid_config():
    with pytest.raises(ArchiveError, match=r"no crewyard\.toml") as exc:
        check(_tar([_file("crew.py")]), limits=LIMITS)
    assert exc.value.code == "invalid_config"
    with pytest.raises(ArchiveError, match="entrypoint"):
        check(_tar([_file("crewyard.toml", b"[deployment]\nframework = 'python'\n")]), limits=LIMITS)


def _packed_names(folder: Path, exclude: list[str]) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(pack(folder, exclude))) as tar:
        return sorted(tar.getnames())


def test_exclude_is_gitignore_style_and_the_crews_gitignore_files_are_honoured(tmp_path: Path):
    files = {
        "crewyard.toml": "x",
        "main.py": "x",
        ".gitignore": "*.log\nbuild/\n!keep.log\n",
        "keep.log": "x",
        "run.log": "x",
        "build/out.txt": "x",
        "src/build/gen.py": "x",  # build/ matches a directory anywhere
        "sub/.gitignore": "!important.log\nsecret.txt\n",
        "sub/important.log": "x",
        "sub/noise.log": "x",
        "sub/secret.txt": "x",
        "secret.txt": "x",  # only sub/'s .gitignore names it
        "docs/guide.md": "x",
        "docs/data.csv": "x",
        "data/raw.csv": "x",
        "pkg/data/keep.csv": "x",  # /data is anchored at the root
        "tests/test_a.py": "x",
        "pkg/tests/test_b.py": "x",
        ".env": "x",
        ".env.local": "x",
        "sub/.env.production": "x",
        ".env.example": "x",  # a template: no values
        ".venv/bin/python": "x",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert _packed_names(tmp_path, ["tests", "docs/*.md", "/data"]) == [
        ".env.example",
        ".gitignore",
        "crewyard.toml",
        "docs/data.csv",
        "keep.log",
        "main.py",
        "pkg/data/keep.csv",
        "secret.txt",
        "sub/.gitignore",
        "sub/important.log",
    ]


def test_nothing_inside_an_excluded_folder_comes_back(tmp_path: Path):
    (tmp_path / "crewyard.toml").write_text("x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "wanted.txt").write_text("x")
    (tmp_path / ".gitignore").write_text("cache/\n!cache/wanted.txt\n")
    assert _packed_names(tmp_path, []) == [".gitignore", "crewyard.toml"]


def test_an_env_variant_is_packed_only_when_asked_for(tmp_path: Path):
    for name in ("crewyard.toml", ".env.production", ".env.staging", ".env.sample"):
        (tmp_path / name).write_text("x")
    assert _packed_names(tmp_path, []) == [".env.sample", "crewyard.toml"]
    assert _packed_names(tmp_path, ["!.env.production"]) == [
        ".env.production",
        ".env.sample",
        "crewyard.toml",
    ]
    (tmp_path / ".gitignore").write_text("!.env.staging\n")
    assert ".env.staging" in _packed_names(tmp_path, [])


def test_a_folder_without_files_is_not_part_of_a_source(tmp_path: Path):
    # Sources are shared by every project under their digest, which covers files only: an empty
    # folder in the first upload of a digest (``openai/``, importable as an empty package) must not
    # reach whoever uploads the same files later.
    folder = tarfile.TarInfo("openai")
    folder.type = tarfile.DIRTYPE
    plain = _tar([_file("crewyard.toml", CONFIG), _file("crew.py", b"print(1)\n")])
    planted = _tar([_file("crewyard.toml", CONFIG), (folder, None), _file("crew.py", b"print(1)\n")])
    assert check(planted, limits=LIMITS).digest == check(plain, limits=LIMITS).digest
    extract(planted, tmp_path / "out", digest=check(plain, limits=LIMITS).digest, limits=LIMITS)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["crew.py", "crewyard.toml"]
