"""LangGraph.js crews in the configuration: langgraph-js entrypoints, langgraph.json, detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crewyard.core import entrypoints
from crewyard.core.crewfile import CrewConfigError, parse
from crewyard.core.detect import detect, render_config
from crewyard.packaging import check, pack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _js(entrypoint: str, extra: str = "") -> str:
    return f'[deployment]\nframework = "langgraph-js"\nentrypoint = "{entrypoint}"\n{extra}'


@pytest.mark.parametrize(
    "entrypoint",
    [
        "./src/graph.ts:graph",
        "src/graph.ts:graph",
        "./agent.mjs:default",
        "./lib/a-b/c.cjs:$g",
        "./x.tsx:G_1",
    ],
)
def test_langgraph_js_entrypoints_name_a_file_and_an_export(entrypoint: str) -> None:
    config = parse(_js(entrypoint), "crewship.toml").deployments[0]
    assert config.framework == "langgraph-js" and config.entrypoint == entrypoint
    assert entrypoints.runtime_of(config.framework) == "node"


@pytest.mark.parametrize(
    "entrypoint",
    [
        "../outside.ts:graph",
        "./src/../../x.ts:graph",
        "/etc/passwd.js:x",
        "./src/.hidden.ts:graph",
        "./src/graph.py:graph",
        "src.graph:graph",
        "./src/graph.ts:",
        "./src/graph.ts:not-a-name",
        "./node_modules/pkg/index.js:x",
        "./src//graph.ts:graph",
        "./src/graph.ts:graph\n",
    ],
)
def test_a_langgraph_js_entrypoint_outside_the_folder_or_malformed_is_a_config_error(entrypoint: str) -> None:
    with pytest.raises(
        CrewConfigError, match=r"'deployment.entrypoint' must look like './src/graph.ts:graph'"
    ):
        parse(_js(json.dumps(entrypoint)[1:-1]))


def test_python_means_nothing_to_a_javascript_crew_and_is_ignored_with_a_warning() -> None:
    parsed = parse(_js("./src/graph.ts:graph", 'python = "3.11"\nprofile = "slim"\n'), "crewship.toml")
    assert parsed.deployments[0].python is None
    assert parsed.warnings == ["crewship.toml: 'deployment.python' ignored: a langgraph-js crew runs on Node"]


def test_the_example_deploys_as_the_reference_product_writes_it() -> None:
    parsed = parse((EXAMPLES / "langgraph-js-agent" / "crewship.toml").read_text(), "crewship.toml")
    assert parsed.warnings == []
    assert parsed.deployments[0].entrypoint == "./src/graph.ts:graph"


def test_langgraph_json_with_one_graph_is_one_deployment() -> None:
    text = json.dumps({"graphs": {"agent": "./src/graph.ts:graph"}, "node_version": "20", "env": ".env"})
    parsed = parse(text, "langgraph.json")
    (config,) = parsed.deployments
    assert (config.framework, config.entrypoint, config.name) == (
        "langgraph-js",
        "./src/graph.ts:graph",
        None,
    )
    assert parsed.warnings and "'env' names a file" in parsed.warnings[0]


def test_langgraph_json_with_several_graphs_names_each_deployment_and_reads_python_graphs_too() -> None:
    text = json.dumps(
        {
            "graphs": {
                "writer": {"path": "./src/writer.mts:app"},
                "planner": "./agents/planner/graph.py:graph",
            },
            "python_version": "3.11",
            "env": {"MODEL": "gpt-4o-mini"},
        }
    )
    parsed = parse(text, "langgraph.json")
    by_name = {d.name: d for d in parsed.deployments}
    assert (
        by_name["writer"].framework == "langgraph-js"
        and by_name["writer"].entrypoint == "./src/writer.mts:app"
    )
    assert by_name["planner"].framework == "langgraph"
    assert (
        by_name["planner"].entrypoint == "agents.planner.graph:graph" and by_name["planner"].python == "3.11"
    )
    assert by_name["writer"].python is None and by_name["writer"].env == {"MODEL": "gpt-4o-mini"}
    assert parsed.select("writer") is by_name["writer"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"graphs": {}}', "'graphs' must name at least one graph"),
        ('{"graphs": {"a": 3}}', "graph 'a' must be a string"),
        ('{"graphs": {"a": "./x.rb:g"}}', "names neither a Python module nor a .ts/.js file"),
        ('{"graphs": {"a": "../up.ts:g"}}', "'deployment.entrypoint' must look like"),
        ('{"graphs": {"Bad Name": "./a.ts:g", "b": "./b.ts:g"}}', "deployment name 'Bad Name'"),
        ('{"graphs": {"a": "./a.ts:g"}, "env": {"LD_PRELOAD": "x"}}', "LD_PRELOAD"),
    ],
)
def test_a_langgraph_json_that_is_not_a_crew_config_says_why(text: str, message: str) -> None:
    with pytest.raises(CrewConfigError) as info:
        parse(text, "langgraph.json")
    assert str(info.value).startswith("langgraph.json: ") and message in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"graphs": {"\\ud800": 3}}', "a key in 'graphs'"),
        ('{"graphs": {"\\ud800": "./a.ts:g"}}', "a key in 'graphs'"),
        ('{"graphs": {"a": "./a.ts:g"}, "env": {"X": "\\udfff"}}', "'env.X'"),
        ('{"graphs": {"a": "./a\\udc80.ts:g"}}', "'graphs.a'"),
        ('{"graphs": {"a": {"path": "./a.ts:g", "description": "\\ud83d"}}}', "'graphs.a.description'"),
        ('{"graphs": {"a": "./a.ts:g"}, "dependencies": [".", "\\ud800x"]}', "'dependencies[1]'"),
    ],
    ids=["name-bad-spec", "name", "env-value", "entrypoint", "unread-field", "unread-list"],
)
def test_a_lone_surrogate_anywhere_in_langgraph_json_is_a_config_error_that_can_be_encoded(
    text: str, where: str
) -> None:
    with pytest.raises(CrewConfigError) as info:
        parse(text, "langgraph.json")
    message = str(info.value)
    message.encode("utf-8")  # it reaches a JSON response: it must encode
    assert message.startswith(f"langgraph.json: {where} holds a lone surrogate"), message


def test_a_lone_surrogate_under_long_keys_nested_deep_is_found_and_its_path_shortened() -> None:
    key = "k" * 1000
    nested = "".join(f'{{"{key}": ' for _ in range(900)) + '"\\ud800"' + "}" * 900
    with pytest.raises(CrewConfigError) as info:
        parse('{"graphs": {"a": "./a.ts:g"}, "x": ' + nested + "}", "langgraph.json")
    assert str(info.value).startswith("langgraph.json: '…k") and len(str(info.value)) < 400


def test_an_escaped_surrogate_pair_is_text_and_accepted() -> None:
    parsed = parse('{"graphs": {"a": "./a.ts:g"}, "env": {"X": "\\ud83d\\ude00"}}', "langgraph.json")
    assert parsed.select(None).env == {"X": "\U0001f600"}


def test_a_graph_name_in_an_error_is_quoted() -> None:
    with pytest.raises(CrewConfigError, match=r"graph 'a\\nb' must be a string"):
        parse('{"graphs": {"a\\nb": 3}}', "langgraph.json")


def test_a_toml_config_wins_over_langgraph_json_in_an_upload(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    shutil.copytree(EXAMPLES / "langgraph-js-agent", crew, ignore=shutil.ignore_patterns("node_modules"))
    (crew / "crewyard.toml").write_text(_js("./src/graph.ts:graph", "timeout = 60\n"))
    checked = check(pack(crew))
    assert checked.config.file == "crewyard.toml" and checked.config.deployments[0].timeout_s == 60
    (crew / "crewyard.toml").unlink()
    (crew / "crewship.toml").unlink()
    assert check(pack(crew)).config.file == "langgraph.json"


def test_detects_the_example_from_its_package_json_and_sources() -> None:
    found = detect(EXAMPLES / "langgraph-js-agent")
    assert found is not None
    assert (found.framework, found.entrypoint) == ("langgraph-js", "./src/graph.ts:graph")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_detects_graphs_exported_later_or_by_default(tmp_path: Path) -> None:
    manifest = json.dumps({"dependencies": {"@langchain/langgraph": "^1.0.0"}})
    listed = _write(
        tmp_path / "listed",
        {
            "package.json": manifest,
            "src/tools.ts": "export const tools = [];\n",
            "src/agent/index.ts": "const workflow = new StateGraph(S)\n  .addNode('a', a)\n  .compile();\n"
            "export { workflow as app };\nconst other = 1;\n",
        },
    )
    default = _write(
        tmp_path / "default",
        {"package.json": manifest, "agent.js": "import x from 'y';\nexport default builder.compile();\n"},
    )
    plain = _write(tmp_path / "plain", {"package.json": "{}", "graph.ts": "export const g = b.compile();\n"})
    assert detect(listed) is not None and detect(listed).entrypoint == "./src/agent/index.ts:app"  # type: ignore[union-attr]
    assert detect(default) is not None and detect(default).entrypoint == "./agent.js:default"  # type: ignore[union-attr]
    assert detect(plain) is None  # no LangGraph.js dependency: not a LangGraph.js crew


def test_detects_a_typescript_graph_named_in_langgraph_json(tmp_path: Path) -> None:
    crew = _write(
        tmp_path, {"langgraph.json": json.dumps({"graphs": {"agent": "./src/agent/graph.ts:graph"}})}
    )
    found = detect(crew)
    assert found is not None and (found.framework, found.entrypoint) == (
        "langgraph-js",
        "./src/agent/graph.ts:graph",
    )


def test_a_javascript_crews_config_has_no_python_line() -> None:
    text = render_config("langgraph-js", "./src/graph.ts:graph", None)
    assert "python" not in text and parse(text).deployments[0].framework == "langgraph-js"
