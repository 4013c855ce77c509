"""``login`` and ``logout`` never save over a config file they cannot read: it may hold the keys
of other APIs. They wrote a fresh file over a damaged one (a hand edit's trailing comma lost every
stored key), and a config path that is a folder was ``unexpected IsADirectoryError``."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply

KEY = "cyk_" + "k" * 43
DAMAGED = b'{"keys": {"https://other.example": "cyk_the_only_copy",}}'


@pytest.fixture
def damaged_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.json"
    path.write_bytes(DAMAGED)
    monkeypatch.setenv("CREWYARD_CONFIG", str(path))
    return path


def test_login_leaves_a_damaged_config_as_it_is(api: FakeApi, run_cli, damaged_config: Path) -> None:
    api.route("GET", "/v1/whoami", Reply(200, {"auth": False}))

    result = run_cli("login", "--api", api.url, "--key-stdin", input=KEY + "\n")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the config file {damaged_config} is damaged (")
    assert "it was left as it is: repair it, or move it away to start a new one" in result.stderr
    assert damaged_config.read_bytes() == DAMAGED
    assert api.requests == []  # found before the key is sent anywhere


def test_logout_leaves_a_damaged_config_as_it_is(run_cli, damaged_config: Path) -> None:
    result = run_cli("logout", "--api", "https://other.example")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the config file {damaged_config} is damaged (")
    assert damaged_config.read_bytes() == DAMAGED


def test_a_config_path_that_is_a_folder_is_a_clear_error(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWYARD_CONFIG", str(tmp_path))

    result = run_cli("logout", "--api", "https://other.example")

    assert result.exit_code == 1
    assert result.stderr == f"error: cannot read the config file {tmp_path}: Is a directory\n"


def test_a_config_that_cannot_be_written_is_a_clear_error(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # No one may make a folder in /proc, root included: nothing to read, and nowhere to write.
    path = "/proc/crewyard-no-such-folder/config.json"
    monkeypatch.setenv("CREWYARD_CONFIG", path)

    result = run_cli("logout", "--api", "https://other.example")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot write the config file {path}: "), result.stderr
    assert "Traceback" not in result.output


def test_login_still_writes_a_config_that_is_missing_or_sound(
    api: FakeApi, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new" / "config.json"
    monkeypatch.setenv("CREWYARD_CONFIG", str(path))
    api.route("GET", "/v1/whoami", Reply(200, {"auth": False}))

    first = run_cli("login", "--api", api.url, "--key-stdin", input=KEY + "\n")
    second = run_cli("logout", "--api", api.url)

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert path.read_text() == "{}\n"


def test_an_empty_config_file_is_an_empty_config(
    api: FakeApi, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"")  # as ``CREWYARD_CONFIG=$(mktemp)`` makes it: no keys to lose
    monkeypatch.setenv("CREWYARD_CONFIG", str(path))
    api.route("GET", "/v1/whoami", Reply(200, {"auth": False}))

    result = run_cli("login", "--api", api.url, "--key-stdin", input=KEY + "\n")

    assert result.exit_code == 0, result.output
    assert KEY in path.read_text()
