"""Plain Python crews through ``python -m crewyard_runtime``: the SDK's events, artifacts, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crewyard.testing import run_runtime

PLAIN = Path(__file__).resolve().parents[2] / "examples" / "plain-python"
CrewModule = Callable[[str, str], Path]


def test_example_emits_agent_task_and_tool_events_and_writes_artifacts(tmp_path: Path) -> None:
    run = run_runtime(
        tmp_path,
        "plain_crew.main:run",
        "python",
        PLAIN,
        {"text": "the cat saw the other cat", "title": "Cats"},
    )
    assert run.returncode == 0, run.stderr
    assert run.kinds == [
        "task.started",
        "agent.started",
        "tool.called",
        "tool.result",
        "agent.completed",
        "task.completed",
        "task.started",
        "agent.started",
        "agent.completed",
        "task.completed",
    ]
    stats = {"words": 6, "unique": 4, "top": ["cat", "the", "other", "saw"]}
    assert run.of_type("tool.called") == [
        {"tool": "word_count", "input": {"text": "the cat saw the other cat"}, "agent": "analyst"}
    ]
    assert run.of_type("tool.result") == [{"tool": "word_count", "output": stats}]
    assert run.result == {"title": "Cats", **stats, "artifacts": ["summary.md", "stats.json"]}
    assert sorted(p.name for p in run.artifacts.iterdir()) == ["stats.json", "summary.md"]
    assert (run.artifacts / "summary.md").read_text().startswith("# Cats\n\n6 words, 4 distinct.")
    logs = [(m["message"], m["stream"]) for m in run.logs]
    assert ("analysing 25 characters", "sdk") in logs
    assert any(message == "done: 6 words" for message, _ in logs)  # a print() in the crew


def test_a_crash_in_the_crew_is_the_runs_error_with_its_traceback(
    tmp_path: Path, crew_module: CrewModule
) -> None:
    folder = crew_module(
        "crashing",
        """
        def run(inputs):
            raise ValueError(f"cannot handle {inputs['x']}")
    """,
    )
    run = run_runtime(tmp_path, "crashing:run", "python", folder, {"x": 42})
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"] == "ValueError: cannot handle 42"
    assert 'crashing.py", line 3, in run' in run.error["traceback"]


@pytest.mark.parametrize(
    ("result", "said"),
    [
        ('{"score": float("nan"), "fine": 1.5}', "NaN and Infinity have no JSON form"),
        ('{(1, 2): "keyed by a tuple"}', "TypeError: keys must be str"),
        ("(lambda d: d.update(me=d) or d)({})", "ValueError: Circular reference detected"),
        ("{'x': Loud()}", "RuntimeError: no text for you"),
    ],
    ids=["nan", "tuple-keys", "cycle", "str-raises"],
)
def test_a_result_that_is_not_json_fails_the_run_saying_why(
    tmp_path: Path, crew_module: CrewModule, result: str, said: str
) -> None:
    folder = crew_module(
        "notjson",
        f"""
        class Loud:
            def __str__(self):
                raise RuntimeError("no text for you")

        def run(inputs):
            return {result}
    """,
    )
    run = run_runtime(tmp_path, "notjson:run", "python", folder, {})
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"].startswith("ValueError: the crew's result is not JSON: "), run.error
    assert said in run.error["message"], run.error


def test_an_async_entrypoint_is_awaited(tmp_path: Path, crew_module: CrewModule) -> None:
    folder = crew_module(
        "asynchronous",
        """
        import asyncio

        async def run(inputs):
            await asyncio.sleep(0)
            return {"echo": inputs}
    """,
    )
    run = run_runtime(tmp_path, "asynchronous:run", "python", folder, {"a": [1, 2]})
    assert run.result == {"echo": {"a": [1, 2]}}


def test_an_unset_api_key_read_by_the_crew_is_named(tmp_path: Path, crew_module: CrewModule) -> None:
    folder = crew_module(
        "needs_key",
        """
        import os

        def run(inputs):
            return os.environ["SERPER_API_KEY"]
    """,
    )
    run = run_runtime(tmp_path, "needs_key:run", "python", folder)
    assert run.error is not None
    assert run.error["message"].startswith(
        "MissingEnvironmentVariable: SERPER_API_KEY is not set; set it for the project"
    )


def test_an_import_error_inside_the_crew_is_not_mistaken_for_a_missing_module(
    tmp_path: Path, crew_module: CrewModule
) -> None:
    folder = crew_module("bad_import", "from json import no_such_name\n\ndef run(inputs):\n    return 1\n")
    run = run_runtime(tmp_path, "bad_import:run", "python", folder)
    assert run.error is not None
    assert run.error["message"].startswith(
        "EntrypointError: importing entrypoint module 'bad_import' failed: cannot import name 'no_such_name'"
    )


def test_the_run_ends_with_its_result_not_with_threads_or_exit_handlers_the_crew_left(
    tmp_path: Path, crew_module: CrewModule
) -> None:
    # A non-daemon thread that never ends would keep the interpreter's teardown waiting forever,
    # and an atexit handler would run during it: the runtime ends the process once its result is
    # out, so neither holds the run up (and what the crew logged is flushed first).
    folder = crew_module(
        "lingering",
        """
        import atexit, logging, pathlib, threading

        def run(inputs):
            threading.Thread(target=threading.Event().wait).start()
            atexit.register(lambda: pathlib.Path("at-exit.txt").write_text("ran"))
            handler = logging.FileHandler("crew.log", delay=False)
            logging.getLogger("crew").addHandler(handler)
            logging.getLogger("crew").warning("logged before returning")
            return {"done": True}
    """,
    )
    run = run_runtime(tmp_path, "lingering:run", "python", folder, {})
    assert run.returncode == 0, run.stderr
    assert run.result == {"done": True}
    assert (run.artifacts / "crew.log").read_text() == "logged before returning\n"
    assert not (run.artifacts / "at-exit.txt").exists()
