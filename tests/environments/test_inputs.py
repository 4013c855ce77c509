"""What a crew's environment is made from: requirement files as written, paths kept inside the
crew's folder, a digest that follows local packages, the operator's registry settings, Pythons."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crewyard.environments import BuildFailed, inputs, pythons, registry

SIX_HASH = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"


def _crew(tmp_path: Path, requirements: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "crew"
    root.mkdir(parents=True)
    (root / "requirements.txt").write_text(requirements)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_hash_pinned_requirements_are_read_as_written_with_their_continuation_lines(tmp_path: Path):
    text = (
        "six==1.16.0 \\\n    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"
    )
    root = _crew(tmp_path, text)
    found = inputs.read(root)
    assert found.requirement_files == ["requirements.txt"] and found.local_paths == []
    # The file goes to the installer untouched: the digest is of its bytes, not of sorted lines.
    other = _crew(tmp_path / "b", text.replace("six==1.16.0 \\", "six==1.16.0 \\ "))
    assert inputs.digest(root, found, source_digest="a", parts=[]) != inputs.digest(
        other, inputs.read(other), source_digest="a", parts=[]
    )


@pytest.mark.parametrize(
    "line",
    ["../elsewhere", "./libs/../../elsewhere", "/etc/passwd", "-r ../other.txt", "-c /etc/constraints.txt",
     "tool @ file:///srv/tool", "--find-links=../wheels", "~/pkg", "-r/etc/x", "-c../c.txt",
     "-f/usr/share/wheels"],
)  # fmt: skip
def test_a_path_leaving_the_crew_folder_is_refused_naming_the_line(tmp_path: Path, line: str):
    root = _crew(tmp_path, f"six\n{line}\n")
    with pytest.raises(BuildFailed, match=r"requirements\.txt line 2"):
        inputs.read(root)


def test_editable_installs_are_refused(tmp_path: Path):
    for line in ("-e ./libs/tool", "-e./libs/tool", "--editable=./libs/tool"):
        root = _crew(tmp_path / line.replace("/", "_"), f"{line}\n", {"libs/tool/setup.py": ""})
        with pytest.raises(BuildFailed, match="editable"):
            inputs.read(root)


def test_a_chain_of_requirement_files_is_bounded(tmp_path: Path):
    files = {f"r{i}.txt": f"-r r{i + 1}.txt\n" for i in range(inputs.MAX_REQUIREMENT_FILES + 5)}
    root = _crew(tmp_path, "-r r0.txt\n", {**files, f"r{inputs.MAX_REQUIREMENT_FILES + 5}.txt": "six\n"})
    with pytest.raises(BuildFailed, match="requirement files"):
        inputs.read(root)


def test_a_changed_local_package_changes_the_digest_and_an_unchanged_crew_does_not(tmp_path: Path):
    root = _crew(tmp_path, "./libs/tool\n-r more.txt\n", {"more.txt": "other @ file:./libs/other\n",
                 "libs/tool/tool.py": "A = 1\n", "libs/other/other.py": "B = 1\n"})  # fmt: skip
    found = inputs.read(root)
    assert found.requirement_files == ["requirements.txt", "more.txt"]
    assert sorted(found.local_paths) == ["libs/other", "libs/tool"]
    first = inputs.digest(root, found, source_digest="s1", parts=["py"])
    assert inputs.digest(root, found, source_digest="s2", parts=["py"]) == first  # code-only change
    (root / "libs" / "other" / "other.py").write_text("B = 2\n")
    assert inputs.digest(root, found, source_digest="s2", parts=["py"]) != first
    assert inputs.digest(root, found, source_digest="s2", parts=["another python"]) != first


def test_a_package_crew_is_installed_and_its_source_names_its_environment(tmp_path: Path):
    root = tmp_path / "pkg"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\nversion = "0.1.0"\ndependencies = ["six"]\n\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    (root / "poetry.lock").write_text("")
    found = inputs.read(root)
    assert found.project and not found.uv_lock
    assert any("poetry.lock is not read" in note for note in found.notes)
    assert inputs.digest(root, found, source_digest="s1", parts=[]) != inputs.digest(
        root, found, source_digest="s2", parts=[]
    )


def test_registry_settings_come_from_pip_config_and_the_environment_and_nothing_else(tmp_path: Path):
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (tmp_path / "mirror" / "simple").mkdir(parents=True)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    (home / ".config" / "pip" / "pip.conf").write_text(
        f"[global]\nfind-links = {wheels}\nextra-index-url = file://{tmp_path}/mirror/simple\ncert = {ca}\n"
    )
    environ = {
        "HTTPS_PROXY": "http://proxy:3128",
        "AWS_SECRET_ACCESS_KEY": "x",
        "CREWYARD_SECRET_KEY": "y",
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "XDG_CONFIG_DIRS": str(tmp_path / "none"),
    }
    reg = registry.from_host(environ, home)
    assert reg.env["HTTPS_PROXY"] == "http://proxy:3128" and reg.env["SSL_CERT_FILE"] == str(ca)
    assert "AWS_SECRET_ACCESS_KEY" not in reg.env and "CREWYARD_SECRET_KEY" not in reg.env
    assert reg.uv_args[:2] == ["--index-url", "https://mirror.example/simple"]
    assert ["--find-links", str(wheels)] == reg.uv_args[reg.uv_args.index("--find-links") :][:2]
    assert "unsafe-best-match" in reg.uv_args  # several indexes: pip's choice across all of them
    # pip's user config goes where pip inside the sandbox looks; what it points to is bound too.
    assert reg.binds[str(home / ".config" / "pip" / "pip.conf")] == f"{registry.CONFIG_HOME}/pip/pip.conf"
    assert str(wheels) in reg.binds and str(tmp_path / "mirror") in reg.binds and str(ca) in reg.binds


def test_an_unavailable_python_fails_with_what_is_available():
    here = pythons.versions()
    assert pythons.select(None).version == here[0] or pythons.select(None).version in here
    assert pythons.select(here[0]).version == here[0]
    with pytest.raises(
        BuildFailed, match=r"asks for Python 3\.99.*available: " + r"\.".join(here[0].split("."))
    ):
        pythons.select("3.99")


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("vendor/xpkg-1.0-py3-none-any.whl", "vendor/xpkg-1.0-py3-none-any.whl"),
        ("xpkg-1.0-py3-none-any.whl", "xpkg-1.0-py3-none-any.whl"),
        ("xpkg@./vendor/xpkg-1.0-py3-none-any.whl", "vendor/xpkg-1.0-py3-none-any.whl"),
        ("xpkg\t@\t./vendor/xpkg-1.0-py3-none-any.whl", "vendor/xpkg-1.0-py3-none-any.whl"),
        ("xpkg@ file:./vendor/xpkg-1.0-py3-none-any.whl", "vendor/xpkg-1.0-py3-none-any.whl"),
        ("xpkg[extra] @ vendor/xpkg-1.0-py3-none-any.whl ; python_version >= '3'",
         "vendor/xpkg-1.0-py3-none-any.whl"),
        ("--find-links vendor\nxpkg", "vendor"),
        ("-fvendor\nxpkg", "vendor"),
        ("--index-url=vendor\nxpkg", "vendor"),
        ("--extra-index-url file:vendor\nxpkg", "vendor"),
    ],
)  # fmt: skip
def test_every_way_uv_reads_a_local_package_puts_its_bytes_in_the_digest(
    tmp_path: Path, line: str, path: str
) -> None:
    wheel = path if path.endswith(".whl") else "vendor/xpkg-1.0-py3-none-any.whl"
    a = _crew(tmp_path / "a", f"six\n{line}\n", {wheel: "the real wheel"})
    b = _crew(tmp_path / "b", f"six\n{line}\n", {wheel: "another project's wheel"})
    found = inputs.read(a)
    assert found.local_paths == [path] and not found.whole
    assert inputs.build_files(a, found) == sorted(["requirements.txt", wheel])
    assert inputs.digest(a, found, source_digest="a", parts=[]) != inputs.digest(
        b, inputs.read(b), source_digest="b", parts=[]
    )


@pytest.mark.parametrize(
    "line",
    ["vendor/../../x.whl", "xpkg@../x.whl", "xpkg\t@\tfile:../x.whl", "../x.whl", "--index-url ../mirror",
     "--extra-index-url=/srv/mirror", "-i../mirror", "xpkg @ file://evil.example/x.whl"],
)  # fmt: skip
def test_a_local_package_named_any_way_must_stay_inside_the_crew(tmp_path: Path, line: str) -> None:
    root = _crew(tmp_path, f"six\n{line}\n")
    with pytest.raises(BuildFailed, match=r"requirements\.txt line 2"):
        inputs.read(root)


def test_remote_requirements_are_left_to_the_registry_and_an_unreadable_line_takes_the_whole_crew(
    tmp_path: Path,
) -> None:
    remote = ("six==1.16.0 ; python_version >= '3.8'\nxpkg @ https://example.com/x.whl\n"
              "https://example.com/y.whl\n--index-url https://mirror.example/simple\n"
              "zpkg[a,b]>=1,<2\n")  # fmt: skip
    found = inputs.read(_crew(tmp_path / "remote", remote))
    assert found.local_paths == [] and not found.whole
    odd = _crew(tmp_path / "odd", "six\nxpkg==${VERSION}\n", {"crew.py": "A = 1\n"})
    found = inputs.read(odd)
    assert found.whole and inputs.build_files(odd, found) is None
    assert inputs.digest(odd, found, source_digest="s1", parts=[]) != inputs.digest(
        odd, found, source_digest="s2", parts=[]
    )


def test_a_build_folder_holds_only_what_the_digest_covers(tmp_path: Path) -> None:
    root = _crew(tmp_path, "six\n-r more.txt\n./libs/tool\n", {
        "more.txt": "-c constraints.txt\n", "constraints.txt": "six<2\n", "libs/tool/tool.py": "A = 1\n",
        "compileall.py": "raise SystemExit('never run')\n", "crew.py": "A = 1\n", "uv.toml": "[pip]\n",
        "libs/tool/__pycache__/tool.cpython-311.pyc": "",
    })  # fmt: skip
    (root / "libs" / "tool" / "link.py").symlink_to(root / "crew.py")
    files = inputs.build_files(root, inputs.read(root))
    assert files == ["constraints.txt", "libs/tool/tool.py", "more.txt", "requirements.txt"]
    inputs.copy_build_folder(root, tmp_path / "build", files)
    copied = sorted(p.relative_to(tmp_path / "build").as_posix() for p in (tmp_path / "build").rglob("*"))
    assert copied == ["constraints.txt", "libs", "libs/tool", "libs/tool/tool.py", "more.txt",
                      "requirements.txt"]  # fmt: skip


@pytest.mark.parametrize(
    "line",
    ["a" * 60_000 + "@", "a" + " " * 60_000 + "b@", "a[" + "b" * 60_000,
     "a" * 30_000 + "[x]" + "b" * 30_000 + "@", "-" * 60_000],
    ids=["long-name", "long-space", "open-extras", "extras-then-at", "dashes"],
)  # fmt: skip
def test_a_hostile_requirement_line_within_the_bound_is_read_quickly(tmp_path: Path, line: str) -> None:
    # Each took seconds to minutes with the backtracking patterns, on the builder's event loop.
    root = _crew(tmp_path, f"six\n{line}\n", {"crew.py": "A = 1\n"})
    started = time.thread_time()  # the work done, not the wall clock of a busy machine
    inputs.read(root)
    assert time.thread_time() - started < 1.0


def test_requirement_lines_by_name_are_read_as_before() -> None:
    by_name = ["six", "six==1.16.0", "zpkg[a,b]>=1,<2", "x[y@z]==1", "x [y] ; python_version >= '3'",
               "a-b.c_d~=1.0", "x[y:z]"]  # fmt: skip
    not_by_name = ["xpkg==${VERSION}", "a-[x@y]", "x[y]@z", "x>=1:2", "-x", "x\\y"]
    assert [inputs._requirement(line) for line in by_name] == [(None, True)] * len(by_name)
    assert [inputs._requirement(line)[1] for line in not_by_name] == [False, False, True, False, False, True]


def test_a_requirement_line_or_file_past_its_bound_fails_the_build_saying_which(tmp_path: Path) -> None:
    long_line = "six==1.16.0 \\\n" + "    --hash=sha256:" + "0" * inputs.MAX_REQUIREMENT_LINE + "\n"
    with pytest.raises(BuildFailed, match=r"requirements\.txt line 1 is longer than 65536 characters"):
        inputs.read(_crew(tmp_path / "line", f"{long_line}"))
    big = "six\n" * (inputs.MAX_REQUIREMENT_FILE_BYTES // 4 + 1)
    with pytest.raises(BuildFailed, match=r"requirement file 'requirements\.txt' is larger than 4096 KiB"):
        inputs.read(_crew(tmp_path / "file", big))
    root = _crew(tmp_path / "pyproject", "six\n")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n' + "#" * inputs.MAX_PYPROJECT_BYTES)
    with pytest.raises(BuildFailed, match=r"pyproject\.toml is larger than 1024 KiB"):
        inputs.read(root)
    with pytest.raises(BuildFailed, match=r"pyproject\.toml is larger than 1024 KiB"):
        inputs.dependencies_of(root)
