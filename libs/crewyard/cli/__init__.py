"""The ``crewyard`` command line: deploy crews, run them, follow their events, fetch their files.

Layout: :mod:`._app` (the command group, loaded by :func:`main`), :mod:`._client` (the typed
client of :mod:`crewyard.client`, and CliError), :mod:`.render` (how events look), one module per
command family. The CLI talks to the platform only through the HTTP API, except the commands that
run the platform itself (:mod:`.admin`).

Design rule: every failure a user can meet is one red ``error: …`` line and exit code 1 (2 for
a usage error click reports: an unknown option, a value an option refuses, such as a project
name the platform cannot have; 130 after Ctrl-C); an unexpected one says how to see the
traceback (``CREWYARD_DEBUG=1``) instead of dumping it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import cli
    from ._client import CliError

__all__ = ["CliError", "cli", "main"]


def main() -> None:
    try:
        from ._app import cli
    except KeyboardInterrupt:
        # Ctrl-C while the commands load (half a second, more on a busy machine) ends the command
        # as quietly as Ctrl-C while it runs, not with a traceback of whichever import it hit.
        raise SystemExit(130) from None
    cli(prog_name="crewyard")


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that `main` is running, and catches Ctrl-C, while they load.
    if name == "cli":
        from ._app import cli

        return cli
    if name == "CliError":
        from ._client import CliError

        return CliError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
