"""The runner chooses its backend off the event loop: choosing asks the engine and the machine."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

import crewyard.runner as runner_service
from crewyard.runner.backends import ProcessBackend
from crewyard.servicekit import ServiceContext
from crewyard.settings import Settings


async def test_the_backend_is_chosen_on_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A docker ping, a trial sandbox and each interpreter's prefix (subprocesses) are asked for
    # while choosing: on the event loop they stopped every other task of the process meanwhile.
    threads: list[threading.Thread] = []

    def choose(settings: Settings) -> ProcessBackend:
        threads.append(threading.current_thread())
        return ProcessBackend()

    monkeypatch.setattr(runner_service, "select_backend", choose)
    settings = Settings(data_dir=tmp_path / "data", backend="process")
    store = SimpleNamespace(nc=None, prefix="test")  # what the runner reads of the store when it is made
    context = ServiceContext(settings=settings, store=store, objects=None)  # type: ignore[arg-type]
    runner = await runner_service.create_service(context)
    try:
        assert isinstance(runner.backend, ProcessBackend)
        assert threads and threads[0] is not threading.main_thread()
    finally:
        runner.identity.release()
