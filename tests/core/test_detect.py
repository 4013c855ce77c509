"""``crewyard init`` detection: framework and entrypoint from a folder, without importing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crewyard.core.crewfile import CrewConfigError, parse
from crewyard.core.detect import Detection, detect, module_path, render_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CREWBASE = """
from crewai.project import CrewBase, agent, crew

@CrewBase
class {name}:
    agents_config = "config/agents.yaml"
"""


def make(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_crewai_project_from_pyproject_and_crewbase_class(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "my_crew"\n[tool.crewai]\ntype = "crew"\n',
            "src/my_crew/__init__.py": "",
            "src/my_crew/main.py": "def run():\n    pass\n",
            "src/my_crew/crew.py": CREWBASE.format(name="MyCrew"),
        },
    )
    assert detect(root) == Detection(
        framework="crewai",
        entrypoint="src.my_crew.crew:MyCrew",
        reason="pyproject.toml has [tool.crewai]; @CrewBase class in src/my_crew/crew.py",
    )


def test_crewai_flow_project(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "pyproject.toml": '[tool.crewai]\ntype = "flow"\n',
            "poem_flow/main.py": "from crewai.flow import Flow\n\nclass PoemFlow(Flow[dict]):\n    pass\n",
        },
    )
    found = detect(root)
    assert found is not None and (found.framework, found.entrypoint) == ("crewai", "poem_flow.main:PoemFlow")


def test_crewbase_class_without_pyproject_even_with_other_decorators_between(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {"crew.py": "from x import CrewBase\n\n@CrewBase\n# note\n@other(1)\nclass Team:\n    pass\n"},
    )
    assert detect(root) == Detection(
        framework="crewai", entrypoint="crew:Team", reason="@CrewBase class in crew.py"
    )


def test_the_research_crew_example() -> None:
    found = detect(EXAMPLES / "research-crew")
    assert found is not None
    assert (found.framework, found.entrypoint) == ("crewai", "research_crew.crew:ResearchCrew")


def test_langgraph_json_names_the_graph(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "langgraph.json": json.dumps(
                {"graphs": {"agent": "./src/agent/graph.py:graph"}, "dependencies": ["."]}
            ),
            "src/agent/graph.py": "graph = None\n",
            "main.py": "def run(inputs):\n    pass\n",
        },
    )
    assert detect(root) == Detection(
        framework="langgraph",
        entrypoint="src.agent.graph:graph",
        reason="langgraph.json names graph 'agent' at ./src/agent/graph.py:graph",
    )


def test_langgraph_json_with_several_graphs_takes_the_first_and_says_so(tmp_path: Path) -> None:
    root = make(tmp_path, {"langgraph.json": json.dumps({"graphs": {"a": "a.py:g", "b": "b.py:g"}})})
    found = detect(root)
    assert found is not None and found.entrypoint == "a:g"
    assert found.reason.endswith("(also defines: b)")


def test_compiled_graph_without_langgraph_json(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "agent/__init__.py": "",
            "agent/graph.py": (
                "from langgraph.graph import StateGraph\n"
                "builder = StateGraph(dict)\ngraph = builder.compile()\n"
            ),
        },
    )
    assert detect(root) == Detection(
        framework="langgraph",
        entrypoint="agent.graph:graph",
        reason="compiled LangGraph graph in agent/graph.py",
    )
    found = detect(EXAMPLES / "langgraph-agent")
    assert found is not None and found.entrypoint == "agent.graph:graph"


def test_plain_python_function_prefers_run_then_kickoff_then_main(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "tools.py": "def helper():\n    pass\n",
            "app/main.py": "def main():\n    pass\n\ndef kickoff(inputs):\n    pass\n",
        },
    )
    assert detect(root) == Detection(
        framework="python", entrypoint="app.main:kickoff", reason="function kickoff() in app/main.py"
    )
    found = detect(EXAMPLES / "plain-python")
    assert found is not None and (found.framework, found.entrypoint) == ("python", "plain_crew.main:run")


def test_shallow_modules_win_and_tests_and_venvs_are_ignored(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "tests/test_x.py": CREWBASE.format(name="TestCrew"),
            ".venv/lib/site.py": CREWBASE.format(name="VenvCrew"),
            "deep/er/mod.py": "async def run(inputs):\n    pass\n",
            "main.py": "def run(inputs):\n    pass\n",
        },
    )
    found = detect(root)
    assert found is not None and found.entrypoint == "main:run"


def test_unknown_folder_gives_none(tmp_path: Path) -> None:
    assert detect(make(tmp_path, {"README.md": "hi", "my-script.py": "def run(x):\n    pass\n"})) is None
    assert detect(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("path", "module"),
    [("./src/a/graph.py", "src.a.graph"), ("pkg/__init__.py", "pkg"), ("a-b/c.py", None), ("x.ts", None)],
)
def test_module_path(path: str, module: str | None) -> None:
    assert module_path(path) == module


def test_render_config_round_trips_through_the_parser() -> None:
    text = render_config("crewai", "research_crew.crew:ResearchCrew", "3.11")
    assert text == (
        "# How crewyard builds and runs this crew (a crewship.toml is read the same way).\n"
        "[deployment]\n"
        'framework = "crewai"\n'
        'entrypoint = "research_crew.crew:ResearchCrew"\n'
        'python = "3.11"\n'
        "\n"
        "[build]\n"
        'exclude = ["tests"]\n'
    )
    config = parse(text).select(None)
    assert (config.framework, config.entrypoint, config.python, config.exclude) == (
        "crewai",
        "research_crew.crew:ResearchCrew",
        "3.11",
        ["tests"],
    )


def test_render_config_without_python_or_excludes() -> None:
    text = render_config("python", "main:run", None, exclude=())
    assert "python =" not in text
    assert "[build]" not in text
    assert parse(text).select(None).entrypoint == "main:run"


def test_render_config_refuses_what_the_parser_would_refuse() -> None:
    with pytest.raises(CrewConfigError, match=r"cannot write crewyard\.toml: .*must look like"):
        render_config("crewai", "research_crew/crew.py", "3.11")
    with pytest.raises(CrewConfigError, match="framework' must be one of"):
        render_config("autogen", "a.b:c", "3.11")
