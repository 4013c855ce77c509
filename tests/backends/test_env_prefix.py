"""The interpreter prefix a sandbox binds is one of this machine's interpreters, never a path an
environment names alone: the environment (pyvenv.cfg included) is the work of the crew's build,
and its ``home`` would otherwise choose a host folder bound into every run."""

from __future__ import annotations

import sys
from pathlib import Path

from crewyard.runner.backends._bwrap_command import base_prefix_of, known_prefixes


def _env(tmp_path: Path, cfg: str) -> Path:
    env = tmp_path / "env"
    env.mkdir(parents=True)
    (env / "pyvenv.cfg").write_text(cfg)
    return env


def test_an_environment_made_from_this_machines_python_binds_its_prefix(tmp_path: Path) -> None:
    home = Path(sys.base_prefix) / "bin"
    prefix = base_prefix_of(_env(tmp_path, f"home = {home}\ninclude-system-site-packages = false\n"))
    assert prefix == home.resolve().parent and prefix in known_prefixes()


def test_a_home_the_environment_names_alone_is_not_bound(tmp_path: Path) -> None:
    for i, home in enumerate(("/x", "/", str(tmp_path), "/etc/bin", "relative/bin")):
        prefix = base_prefix_of(_env(tmp_path / str(i), f"home = {home}\n"))
        assert prefix == Path(sys.base_prefix), (home, prefix)


def test_a_linked_pyvenv_cfg_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.cfg"
    elsewhere.write_text("home = /x\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "pyvenv.cfg").symlink_to(elsewhere)
    assert base_prefix_of(env) == Path(sys.base_prefix)
