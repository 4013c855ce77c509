"""JavaScript crews' environments: what goes in (package.json, locks), the digest, the sandboxed build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildFailed, BuildRequest, VenvBuilder, npm
from crewyard.environments import registry as build_registry

MANIFEST = {"name": "crew", "private": True, "type": "module"}


def _crew(root: Path, manifest: dict | None = None, **files: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(manifest or MANIFEST))
    for name, text in files.items():
        (root / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (root / name.replace("__", "/")).write_text(text)
    return root


def _lock(name: str = "crew", deps: dict | None = None) -> str:
    return json.dumps(
        {
            "name": name,
            "lockfileVersion": 3,
            "requires": True,
            "packages": {"": {"name": name, **(deps or {})}},
        }
    )


def test_a_lock_file_means_npm_ci_and_none_means_npm_install(tmp_path: Path) -> None:
    locked = npm.read(_crew(tmp_path / "locked", **{"package-lock.json": _lock()}))
    unlocked = npm.read(_crew(tmp_path / "unlocked"))
    assert locked.lock == "package-lock.json" and " ci " in npm.build_script(locked, "/env", ["npm"])
    assert unlocked.lock is None and " install " in npm.build_script(unlocked, "/env", ["npm"])
    assert any("no package-lock.json" in note for note in unlocked.notes)


@pytest.mark.parametrize("lock", ["pnpm-lock.yaml", "yarn.lock", "bun.lockb"])
def test_a_lock_npm_cannot_read_fails_the_build_saying_what_to_do(tmp_path: Path, lock: str) -> None:
    with pytest.raises(BuildFailed, match=r"add a package-lock.json \(`npm install --package-lock-only`\)"):
        npm.read(_crew(tmp_path, **{lock: "lockfileVersion: 9\n"}))
    (tmp_path / "package-lock.json").write_text(_lock())
    both = npm.read(tmp_path)
    assert both.lock == "package-lock.json" and any(f"{lock} is not read" in n for n in both.notes)


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ({"mytool": "file:../outside"}, "points outside the crew's folder"),
        ({"mytool": "file:/etc"}, "is an absolute path"),
        ({"mytool": "link:./libs/mytool"}, "link: dependencies cannot be deployed"),
        ({"mytool": 3}, "must be a version string"),
    ],
)
def test_local_packages_must_stay_inside_the_crew(tmp_path: Path, deps: dict, message: str) -> None:
    with pytest.raises(BuildFailed, match=message):
        npm.read(_crew(tmp_path, {**MANIFEST, "dependencies": deps}))


def test_workspaces_and_broken_manifests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="npm workspaces are not supported"):
        npm.read(_crew(tmp_path / "ws", {**MANIFEST, "workspaces": ["packages/*"]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "package.json").write_text("{not json")
    with pytest.raises(BuildFailed, match=r"package\.json is not valid JSON"):
        npm.read(tmp_path / "broken")
    (tmp_path / "none").mkdir()
    with pytest.raises(BuildFailed, match=r"needs a package\.json"):
        npm.read(tmp_path / "none")


def test_a_package_json_larger_than_a_mebibyte_fails_the_build_unread(tmp_path: Path) -> None:
    root = _crew(tmp_path / "huge")
    (root / "package.json").write_text("[" + ",".join(["{}"] * 600_000) + "]")  # 1.8 MB of objects
    with pytest.raises(
        BuildFailed, match=r"package\.json is larger than 1024 KiB; builds read no bigger one"
    ):
        npm.read(root)


def test_the_digest_follows_the_dependencies_not_the_code(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "dependencies": {"mytool": "file:./libs/mytool"}}
    crew = _crew(tmp_path, manifest, **{"src__graph.ts": "export const g = 1;\n",
                                        "libs__mytool__package.json": '{"name": "mytool"}',
                                        "libs__mytool__index.js": "module.exports = 1;\n"})  # fmt: skip
    parts = ["node:20"]

    def digest() -> str:
        return npm.digest(crew, npm.read(crew), parts=parts)

    first = digest()
    (crew / "src" / "graph.ts").write_text("export const g = 2;\n")
    assert digest() == first, "a code-only change must reuse the installed dependencies"
    (crew / "libs" / "mytool" / "index.js").write_text("module.exports = 2;\n")
    changed_local = digest()
    assert changed_local != first, "a changed local package must be installed again"
    (crew / "package-lock.json").write_text(_lock())
    assert digest() != changed_local
    assert npm.digest(crew, npm.read(crew), parts=["node:22"]) != digest()


def test_npm_settings_come_from_the_operators_npmrc_files(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("---")
    user = tmp_path / "npmrc"
    user.write_text(
        f"registry=https://npm.corp.example/\n@acme:registry=https://acme.example/\ncafile={ca}\n"
    )
    reg = build_registry.from_host(
        {"NPM_CONFIG_USERCONFIG": str(user), "HTTPS_PROXY": "http://proxy:3128"}, tmp_path
    )
    assert reg.binds[str(user)] == build_registry.NPM_USERCONFIG and reg.binds[str(ca)] == str(ca)
    assert reg.env["NPM_CONFIG_USERCONFIG"] == build_registry.NPM_USERCONFIG
    assert reg.env["HTTPS_PROXY"] == "http://proxy:3128"
    assert "@acme:registry=https://acme.example/" in reg.npm_digest_parts()


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_lock_that_does_not_match_package_json_fails_the_sandboxed_build(tmp_path: Path) -> None:
    crew = _crew(tmp_path / "crew", {**MANIFEST, "dependencies": {"left-pad": "1.3.0"}},
                 **{"package-lock.json": _lock(), "crew.ts": "export const run = () => 1;\n"})  # fmt: skip
    request = BuildRequest(
        deployment_id="dep_node_env", project="tests", source_dir=crew, source_digest="sha256-x",
        config=CrewConfig(entrypoint="./crew.ts:run", framework="langgraph-js"),
    )  # fmt: skip
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    with pytest.raises(BuildFailed) as info:
        await VenvBuilder(tmp_path / "cache").build(request, log)
    assert "dependencies failed to install" in str(info.value)
    assert "npm ci" in "\n".join(lines) and "in sync" in "\n".join(lines), lines[-20:]


def test_a_build_folder_holds_what_the_digest_covers_never_an_uploaded_node_modules(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "dependencies": {"mytool": "file:./libs/mytool"}}
    files = {
        "src__graph.ts": "export const g = 1;\n",
        ".npmrc": "x=1\n",
        "node_modules__x__index.js": "'bad'",
        "libs__mytool__index.js": "module.exports = 1;\n",
        "libs__mytool__node_modules__x__index.js": "''",
    }
    crew = _crew(tmp_path / "plain", manifest, **files)
    found = npm.read(crew)
    assert not found.whole
    assert npm.build_files(crew, found) == [".npmrc", "libs/mytool/index.js", "package.json"]
    before = npm.digest(crew, found, parts=[])
    (crew / "libs" / "mytool" / "node_modules" / "x" / "index.js").write_text("'other'")
    assert npm.digest(crew, found, parts=[]) == before  # not an input at all

    scripts = {**MANIFEST, "scripts": {"postinstall": "node setup.js"}}
    crew = _crew(
        tmp_path / "scripts", scripts, **{"setup.js": "1", "node_modules__x__index.js": "'POISONED'"}
    )
    found = npm.read(crew)
    assert found.whole and any("install scripts (postinstall)" in note for note in found.notes)
    assert npm.build_files(crew, found) == ["package.json", "setup.js"]
    before = npm.digest(crew, found, parts=[])
    (crew / "setup.js").write_text("2")
    assert npm.digest(crew, found, parts=[]) != before


def test_a_name_in_package_json_is_quoted_in_the_failure(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "package.json").write_text('{"dependencies": {"\\ud800": 7}}')
    with pytest.raises(BuildFailed) as failed:
        npm.read(crew)
    assert str(failed.value) == "package.json dependencies['\\ud800'] must be a version string"
    str(failed.value).encode()  # valid UTF-8: an event can carry it
