"""Ctrl-C while the CLI loads its commands (half a second, more on a busy machine) ends it quietly
with exit code 130, as Ctrl-C while it runs does; it printed a KeyboardInterrupt traceback from
whichever import it hit."""

from __future__ import annotations

import subprocess
import sys

# The console script, with Ctrl-C pressed while the command modules are being imported.
_PRESSED_WHILE_LOADING = """
import os, signal, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "crewyard.cli.runs":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
from crewyard.cli import main
sys.exit(main())
"""


def test_ctrl_c_while_the_commands_load_is_quiet(dead_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PRESSED_WHILE_LOADING, "runs", "list", "--api", dead_url],
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 130, done.stderr.decode()
    assert done.stderr == b""
