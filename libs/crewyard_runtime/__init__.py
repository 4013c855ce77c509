"""The crew runtime: what runs *inside* a run's container or sandbox. Standard library only.

``python -m crewyard_runtime`` resolves the crew's entrypoint, calls it with the run's input and
reports to the runner over a line protocol on its stdout (see ``_protocol``). Crew code may emit
its own events through the SDK::

    from crewyard_runtime import emit, artifacts_dir
    emit("tool.called", tool="search", input={"q": "agents"})
    (artifacts_dir() / "report.md").write_text("# Report")
"""

from .sdk import artifacts_dir, emit, log

__all__ = ["artifacts_dir", "emit", "log"]
VERSION = "1"
