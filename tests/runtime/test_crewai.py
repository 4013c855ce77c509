"""Real CrewAI crews through ``python -m crewyard_runtime``, against the fake LLM on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import crewyard_runtime
from crewyard.testing import FakeLLM, RuntimeRun, run_runtime, write_module

CrewModule = Callable[[str, str], Path]

RESEARCH = Path(__file__).resolve().parents[2] / "examples" / "research-crew"
RUNTIME_LIBS = Path(crewyard_runtime.__file__).resolve().parents[1]

# A crew of the test's own for the paths the example does not take: CrewAI's text (ReAct) tool
# protocol, a tool that raises, a plain ``Crew`` object as entrypoint, and an absolute
# output_file inside the artifacts folder (CrewAI strips its leading "/").
EDGE_CREW = """
    import os

    from crewai import Agent, Crew, Task
    from crewai.llms.providers.openai.completion import OpenAICompletion
    from crewai.tools import tool


    class TextOnlyLLM(OpenAICompletion):
        # Models without function calling get tools through the Thought/Action text protocol.
        def supports_function_calling(self) -> bool:
            return False


    @tool("shout")
    def shout(text: str) -> str:
        \"\"\"Upper-case the text.\"\"\"
        return text.upper()


    @tool("broken")
    def broken(text: str) -> str:
        \"\"\"Always fails.\"\"\"
        raise RuntimeError("the broken tool broke")


    shouter = Agent(role="Shouter", goal="Shout {word}", backstory="Loud.", tools=[shout],
                    llm=TextOnlyLLM(model="gpt-4o-mini"))
    breaker = Agent(role="Breaker", goal="Break things", backstory="Clumsy.", tools=[broken],
                    llm="gpt-4o-mini")
    crew = Crew(
        agents=[shouter, breaker],
        tasks=[
            Task(description="Shout the word {word}.", expected_output="The word, loud.", agent=shouter),
            Task(description="Use the broken tool on {word}.", expected_output="A report.", agent=breaker,
                 output_file=os.environ["CREWYARD_ARTIFACTS_DIR"] + "/nested/loud.md"),
        ],
    )
"""


@pytest.fixture(scope="module")
def research_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as llm:
        yield llm


@pytest.fixture(scope="module")
def research_run(tmp_path_factory: pytest.TempPathFactory, research_llm: FakeLLM) -> RuntimeRun:
    return run_runtime(
        tmp_path_factory.mktemp("research"),
        "research_crew.crew:ResearchCrew",
        "crewai",
        RESEARCH,
        {"topic": "AI agents"},
        llm=research_llm,
    )


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM) -> RuntimeRun:
    tmp = tmp_path_factory.mktemp("edge")
    folder = write_module(tmp / "crew", "edge_crew", EDGE_CREW)
    return run_runtime(tmp, "edge_crew:crew", "crewai", folder, {"word": "hello"}, llm=fake_llm)


def _activity(run: RuntimeRun) -> list[str]:
    return [k for k in run.kinds if k.split(".")[0] in ("agent", "task", "tool")]


def test_research_crew_reports_tasks_agents_and_tools_in_order(research_run: RuntimeRun) -> None:
    assert research_run.returncode == 0, research_run.stderr[-3000:]
    assert _activity(research_run) == [
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
    first_task = research_run.of_type("task.started")[0]
    assert first_task["task"].startswith("Research AI agents. Search the research notes")
    assert first_task["agent"] == "AI agents Researcher"  # the YAML role, interpolated and trimmed
    assert research_run.of_type("agent.started")[1] == {
        "agent": "Report Writer",
        "task": "Write a short markdown report about AI agents from the researcher's findings.",
    }
    called = research_run.of_type("tool.called")[0]
    assert called["tool"] == "search_notes"
    assert called["agent"] == "AI agents Researcher"
    assert set(called["input"]) == {"query"}
    assert research_run.of_type("tool.result")[0]["output"].startswith("[note: ")
    completed = research_run.of_type("task.completed")
    assert completed[0]["output"].startswith("Fake LLM answer about: Research AI agents")


def test_research_crew_output_is_the_final_answer_and_report_md_is_an_artifact(
    research_run: RuntimeRun,
) -> None:
    output = research_run.result
    assert set(output) == {"raw"}
    assert output["raw"].startswith("Fake LLM answer about: Write a short markdown report about AI agents")
    report = research_run.artifacts / "report.md"
    assert report.read_text(encoding="utf-8") == output["raw"]
    # CrewAI keeps its own storage under HOME, not in the artifacts folder.
    assert sorted(p.name for p in research_run.artifacts.iterdir()) == ["report.md"]


def test_research_crew_really_calls_its_tool_through_the_model(
    research_llm: FakeLLM, research_run: RuntimeRun
) -> None:
    requests = research_llm.chat_requests()
    assert requests, "the crew never reached the fake LLM"
    assert {r.authorization for r in requests} == {"Bearer fake"}
    assert {r.body["model"] for r in requests} == {"gpt-4o-mini"}
    assert requests[0].tool_names == ["search_notes"]
    assert requests[0].reply is not None and requests[0].reply.tool_calls[0].name == "search_notes"
    tool_messages = [m for r in requests for m in r.body["messages"] if m.get("role") == "tool"]
    assert any("[note: " in str(m["content"]) for m in tool_messages)


def test_crewai_console_output_arrives_as_clean_log_lines(research_run: RuntimeRun) -> None:
    messages = [m["message"] for m in research_run.logs]
    assert any("Crew Execution Started" in m for m in messages)
    assert any("Tool: search_notes" in m for m in messages)
    assert not [m for m in messages if "\x1b" in m], "ANSI escape codes leaked into logs"
    assert research_run.stray_stdout == []
    assert "crew ResearchCrew completed" in " ".join(messages)


def test_text_protocol_tool_calls_are_reported(edge_run: RuntimeRun) -> None:
    assert edge_run.returncode == 0, edge_run.stderr[-3000:]
    assert edge_run.of_type("tool.called")[0] == {
        "tool": "shout",
        "input": {"text": "Shout the word hello."},
        "agent": "Shouter",
    }
    assert edge_run.of_type("tool.result")[0] == {"tool": "shout", "output": "SHOUT THE WORD HELLO."}
    assert edge_run.of_type("agent.completed")[0]["output"] == (
        "Fake LLM answer about: Shout the word hello.\nTool result used: SHOUT THE WORD HELLO."
    )


def test_a_failing_tool_is_a_tool_error_and_the_crew_goes_on(edge_run: RuntimeRun) -> None:
    assert {"tool": "broken", "error": "the broken tool broke"} in edge_run.of_type("tool.error")
    assert edge_run.result["raw"].endswith("Tool result used: Error executing tool: the broken tool broke")


def test_absolute_output_file_inside_the_artifacts_folder_stays_there(edge_run: RuntimeRun) -> None:
    written = edge_run.artifacts / "nested" / "loud.md"
    assert written.read_text(encoding="utf-8") == edge_run.result["raw"]
    assert [p.name for p in edge_run.artifacts.iterdir()] == ["nested"]


def test_missing_api_key_fails_with_a_message_naming_it(tmp_path: Path, fake_llm: FakeLLM) -> None:
    run = run_runtime(
        tmp_path,
        "research_crew.crew:ResearchCrew",
        "crewai",
        RESEARCH,
        {"topic": "x"},
        llm=fake_llm,
        drop=("OPENAI_API_KEY",),
    )
    assert run.returncode == 1
    assert run.error is not None
    assert run.error["message"].startswith("MissingEnvironmentVariable: OPENAI_API_KEY is not set")
    assert "OPENAI_API_KEY is required" in run.error["traceback"]


def test_entrypoint_with_a_missing_attribute_names_what_the_module_defines(tmp_path: Path) -> None:
    run = run_runtime(tmp_path, "research_crew.crew:ResearchCrews", "crewai", RESEARCH)
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"] == (
        "EntrypointError: module 'research_crew.crew' has no attribute 'ResearchCrews';"
        " it defines: ResearchCrew"
    )


def test_entrypoint_module_not_found(tmp_path: Path) -> None:
    run = run_runtime(tmp_path, "research_crew.crews:ResearchCrew", "crewai", RESEARCH)
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"].startswith(
        "EntrypointError: entrypoint module 'research_crew.crews' not found:"
        " No module named 'research_crew.crews'"
    )


def test_missing_dependency_says_which_package(tmp_path: Path, crew_module: CrewModule) -> None:
    folder = crew_module("needs_pkg", "import surely_not_installed_pkg.sub\n\ncrew = None\n")
    run = run_runtime(tmp_path, "needs_pkg:crew", "crewai", folder)
    assert run.returncode == 1 and run.error is not None
    assert run.error["message"] == (
        "MissingDependency: module 'surely_not_installed_pkg' is not installed (imported by 'needs_pkg');"
        " add the package that provides it to requirements.txt"
    )


def test_a_crewbase_crew_is_built_and_its_model_client_imported_when_prepared(tmp_path: Path) -> None:
    # What `ready` promises for CrewAI: the module imported, the @CrewBase class built into its
    # Crew with an executor per agent, OpenAI's lazily imported client modules and what kickoff
    # imports on its first call loaded — nothing of that is left for the run's start (at warm-up,
    # before the run exists), and no model was called.
    script = (
        "import sys; from crewyard_runtime.adapters import load, LAZY_MODULES;"
        " loaded = load('research_crew.crew:ResearchCrew', 'crewai');"
        " print(all(a.agent_executor is not None for a in loaded.obj.agents),"
        " all(m in sys.modules for m in LAZY_MODULES['crewai']),"
        " type(loaded.obj).__name__, 'openai.resources.chat' in sys.modules)"
    )
    llm = FakeLLM().start()  # its own: no other test's requests
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": llm.base_url,
        "PYTHONPATH": f"{RUNTIME_LIBS}{os.pathsep}{RESEARCH}",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
    finally:
        llm.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-4:] == ["True", "True", "Crew", "True"]
    assert not llm.requests


STEP_CREW = """
    from crewai import Agent, Crew, Task


    def step(output):
        pass


    writer = Agent(role="Writer of {word}", goal="Write about {word}", backstory="Terse.", llm="gpt-4o-mini")
    crew = Crew(
        agents=[writer],
        tasks=[Task(description="Write one line about {word}.", expected_output="A line.", agent=writer)],
        step_callback=step,
    )
"""


def test_executors_made_at_prepare_carry_the_crews_settings_and_the_runs_input(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    # The agents' executors exist before the run's input does: they must carry what the crew
    # gives its agents (here its step callback) as kickoff's own would, and kickoff must still
    # fill the run's input into the prompt the model gets.
    folder = write_module(tmp_path / "crew", "step_crew", STEP_CREW)
    script = (
        "from crewyard_runtime.adapters import load; loaded = load('step_crew:crew', 'crewai');"
        " executor = loaded.obj.agents[0].agent_executor;"
        " print(executor is not None and executor.step_callback is loaded.obj.step_callback)"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": fake_llm.base_url,
        "PYTHONPATH": f"{RUNTIME_LIBS}{os.pathsep}{folder}",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "True"
    run = run_runtime(tmp_path, "step_crew:crew", "crewai", folder, {"word": "otters"}, llm=fake_llm)
    assert run.result is not None
    prompts = [str(r.body.get("messages")) for r in fake_llm.requests]
    assert any("Writer of otters" in p and "one line about otters" in p for p in prompts)
