"""The crew runtime: what runs *inside* a run's container or sandbox. Standard library only.

``python -m crewyard_runtime`` speaks the runner ↔ runtime protocol (``protocol.json``: JSON
lines, its stdin from the runner, its stdout to it): it receives the crew's environment and
entrypoint in ``prepare``, imports the crew, receives the input in ``start``, calls the crew and
reports the outcome. Crew code may emit its own events through the SDK::

    from crewyard_runtime import emit, artifacts_dir
    emit("tool.called", tool="search", input={"q": "agents"})
    (artifacts_dir() / "report.md").write_text("# Report")

and use the platform's state: ``tables`` (the project's tables: insert, query, update, delete
rows) and ``thread`` (a thread run's state: ``values()``, ``update(...)``)::

    from crewyard_runtime import tables, thread
"""

from . import tables, thread
from .sdk import artifacts_dir, emit, log

__all__ = ["artifacts_dir", "emit", "log", "tables", "thread"]
VERSION = "4"
