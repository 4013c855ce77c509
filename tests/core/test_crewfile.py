"""crewyard.toml and the reference product's crewship.toml, read by the same parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.core.bounds import MAX_ENV_VALUE
from crewyard.core.crewfile import (
    MAX_DEPLOYMENTS,
    MAX_ENV_VARS,
    MAX_EXCLUDE_LENGTH,
    MAX_EXCLUDES,
    CrewConfig,
    CrewConfigError,
    memory_bytes,
    parse,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SINGLE = """
[deployment]
framework = "crewai"
entrypoint = "src.my_crew.crew:MyCrew"
profile = "slim"
python = "3.11"

[build]
exclude = ["tests"]
"""

MULTI = """
[build]
exclude = ["tests"]

[chat]
input_key = "query"

[deployments.support-agent]
framework = "crewai"
entrypoint = "support_crew.crew:SupportCrew"

[deployments.research-agent]
framework = "crewai"
entrypoint = "research_crew.crew:ResearchCrew"
timeout = 300

[deployments.research-agent.chat]
input_key = "topic"

[deployments.research-agent.build]
exclude = ["notebooks"]
"""


def test_single_deployment_layout_as_the_reference_documents_it() -> None:
    parsed = parse(SINGLE, "crewship.toml")
    assert parsed.warnings == []
    assert parsed.deployments == [
        CrewConfig(
            entrypoint="src.my_crew.crew:MyCrew",
            framework="crewai",
            profile="slim",
            python="3.11",
            exclude=["tests"],
        )
    ]
    assert parsed.select(None).entrypoint == "src.my_crew.crew:MyCrew"


def test_multi_deployment_layout_with_shared_and_own_settings() -> None:
    parsed = parse(MULTI, "crewship.toml")
    assert parsed.warnings == []
    assert [d.name for d in parsed.deployments] == ["support-agent", "research-agent"]
    research = parsed.select("research-agent")
    assert research.entrypoint == "research_crew.crew:ResearchCrew"
    assert research.timeout_s == 300
    assert research.exclude == ["tests", "notebooks"]
    assert parsed.select("support-agent").exclude == ["tests"]


def test_several_deployments_need_a_name() -> None:
    parsed = parse(MULTI, "crewship.toml")
    with pytest.raises(
        CrewConfigError, match=r"several deployments \(support-agent, research-agent\).*--name"
    ):
        parsed.select(None)
    with pytest.raises(CrewConfigError, match="no deployment named 'writer'"):
        parsed.select("writer")


def test_both_layouts_at_once_is_an_error() -> None:
    text = SINGLE + '\n[deployments.other]\nentrypoint = "other.main:run"\n'
    with pytest.raises(
        CrewConfigError, match=r"^crewship.toml: use either \[deployment\] or \[deployments.<name>\]"
    ):
        parse(text, "crewship.toml")


def test_no_deployment_at_all() -> None:
    with pytest.raises(CrewConfigError, match=r"crewyard.toml: missing \[deployment\] table"):
        parse('[build]\nexclude = ["x"]\n')


@pytest.mark.parametrize(
    "entrypoint", ["research_crew.crew", "research_crew/crew.py:Crew", ":Crew", "a.b:", "1x:y"]
)
def test_bad_entrypoint(entrypoint: str) -> None:
    text = f'[deployment]\nframework = "crewai"\nentrypoint = "{entrypoint}"\n'
    with pytest.raises(CrewConfigError) as info:
        parse(text, "crewship.toml")
    assert str(info.value) == (
        "crewship.toml: 'deployment.entrypoint' must look like 'package.module:attribute', got "
        + repr(entrypoint)
    )


def test_missing_entrypoint() -> None:
    with pytest.raises(CrewConfigError, match=r"'deployment.entrypoint' is required"):
        parse('[deployment]\nframework = "crewai"\n', "crewship.toml")


@pytest.mark.parametrize("number", ["3.10", "3.1", "3.12", "3"])
def test_a_python_version_written_as_a_number_is_refused_with_how_to_quote_it(number: str) -> None:
    # TOML reads 3.10 as 3.1: taking numbers would build a crew on the wrong Python, or none.
    with pytest.raises(CrewConfigError) as info:
        parse(f'[deployment]\nentrypoint = "a:b"\npython = {number}\n')
    message = str(info.value)
    assert "'deployment.python' must be quoted" in message and 'python = "3.10"' in message
    assert "3.10 reads as 3.1" in message


def test_a_python_version_number_in_langgraph_json_is_refused() -> None:
    doc = '{"graphs": {"agent": "./agent.py:graph"}, "python_version": 3.10}'
    with pytest.raises(CrewConfigError, match=r"'python_version' must be a string.*3\.10 reads as 3\.1"):
        parse(doc, "langgraph.json")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('python = ["3.11"]', "crewyard.toml: 'deployment.python' must be str, got list"),
        ("framework = 3", "crewyard.toml: 'deployment.framework' must be str, got int"),
        ("timeout = true", "crewyard.toml: 'deployment.timeout' must be int or float, got bool"),
        ('pids = "many"', "crewyard.toml: 'deployment.pids' must be int, got str"),
    ],
)
def test_wrong_types_name_the_file_the_key_and_the_reason(line: str, message: str) -> None:
    with pytest.raises(CrewConfigError) as info:
        parse(f'[deployment]\nentrypoint = "crew.main:run"\n{line}\n')
    assert str(info.value) == message


def test_wrong_values_name_the_file_and_the_key() -> None:
    with pytest.raises(
        CrewConfigError, match=r"crewship.toml: 'deployment.framework' must be one of python, crewai"
    ):
        parse('[deployment]\nframework = "autogen"\nentrypoint = "a.b:c"\n', "crewship.toml")
    with pytest.raises(CrewConfigError, match=r"'build.exclude' must be an array of strings"):
        parse('[deployment]\nentrypoint = "a.b:c"\n[build]\nexclude = "tests"\n')
    with pytest.raises(CrewConfigError, match=r"crewship.toml: not valid TOML"):
        parse("[deployment\n", "crewship.toml")


def test_unknown_keys_are_warnings_not_errors() -> None:
    parsed = parse('colour = "blue"\n[deployment]\nentrypoint = "a.b:c"\nregion = "eu"\n', "crewship.toml")
    assert parsed.warnings == [
        "crewship.toml: unknown key 'colour' ignored",
        "crewship.toml: unknown key 'deployment.region' ignored",
    ]
    assert parsed.select(None).entrypoint == "a.b:c"


def test_crewyard_keys_and_env_defaults() -> None:
    parsed = parse(
        '[env]\nLOG_LEVEL = "info"\n[deployment]\nentrypoint = "a.b:c"\nmemory = "512m"\ncpus = 0.5\n'
        'network = "none"\n[deployment.env]\nLOG_LEVEL = "debug"\nRETRIES = 3\n'
    )
    config = parsed.select(None)
    assert (config.memory, config.cpus, config.network) == ("512m", 0.5, "none")
    assert config.env == {"LOG_LEVEL": "debug", "RETRIES": "3"}
    assert memory_bytes(config.memory) == 512 * 1024 * 1024


def test_warm_sandboxes_per_deployment_are_bounded_and_zero_turns_them_off() -> None:
    assert parse('[deployment]\nentrypoint = "a.b:c"\n').select(None).warm is None  # the platform's
    assert parse('[deployment]\nentrypoint = "a.b:c"\nwarm = 0\n').select(None).warm == 0
    assert parse('[deployment]\nentrypoint = "a.b:c"\nwarm = 3\n').select(None).warm == 3
    for bad in ("-1", "17", '"2"', "true", "1.5"):
        with pytest.raises(CrewConfigError, match=r"'deployment\.warm'"):
            parse(f'[deployment]\nentrypoint = "a.b:c"\nwarm = {bad}\n')


@pytest.mark.parametrize(
    ("example", "file", "framework", "entrypoint"),
    [
        ("research-crew", "crewship.toml", "crewai", "research_crew.crew:ResearchCrew"),
        ("langgraph-agent", "crewship.toml", "langgraph", "agent.graph:graph"),
        ("plain-python", "crewyard.toml", "python", "plain_crew.main:run"),
    ],
)
def test_the_examples_configurations(example: str, file: str, framework: str, entrypoint: str) -> None:
    folder = EXAMPLES / example
    parsed = parse((folder / file).read_text(), file)
    assert parsed.warnings == []
    config = parsed.select(None)
    assert (config.framework, config.entrypoint) == (framework, entrypoint)
    module = config.entrypoint.partition(":")[0].replace(".", "/")
    assert (folder / f"{module}.py").is_file()


def test_python_must_be_a_version_string() -> None:
    assert parse('[deployment]\nentrypoint = "a:b"\npython = "3.12"\n').deployments[0].python == "3.12"
    with pytest.raises(CrewConfigError, match="python"):
        parse('[deployment]\nentrypoint = "a:b"\npython = "latest"\n')


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('entrypoint = "crew:run\\n"', "entrypoint"),
        ('entrypoint = "crew:run"\nmemory = "512m\\n"', "memory"),
        ('entrypoint = "crew:run"\nmemory = "99999999999g"', "memory"),
        ('entrypoint = "crew:run"\nmemory = "1"', "at least 16m"),
        ('entrypoint = "crew:run"\ntimeout = inf', "timeout"),
        ('entrypoint = "crew:run"\ntimeout = nan', "timeout"),
        ('entrypoint = "crew:run"\ntimeout = 1e300', "timeout"),
        ('entrypoint = "crew:run"\ncpus = 1e9', "cpus"),
        ('entrypoint = "crew:run"\npids = 99999999999999999', "pids"),
        ('entrypoint = "crew:run"\nmax_concurrent_runs = 10000000', "max_concurrent_runs"),
    ],
)
def test_values_are_matched_whole_and_bounded(toml: str, message: str) -> None:
    with pytest.raises(CrewConfigError, match=message):
        parse(f"[deployment]\n{toml}\n")


@pytest.mark.parametrize(
    "toml",
    [
        "pids = 1" + "0" * 400,  # too big for a float
        "cpus = 1" + "0" * 400,
        "x = " + "[" * 3000 + "]" * 3000,  # nested past what the parser reads
    ],
)
def test_numbers_and_nesting_no_reader_can_take_are_a_config_error(toml: str) -> None:
    with pytest.raises(CrewConfigError):
        parse(f'[deployment]\nentrypoint = "a.b:c"\n{toml}\n')


def test_a_langgraph_json_nested_past_what_a_reader_takes_is_a_config_error() -> None:
    doc = '{"graphs": {"a": "./crew.py:run"}, "x": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(CrewConfigError, match="nested too deeply"):
        parse(doc, "langgraph.json")


def test_an_env_value_with_a_nul_character_is_a_config_error() -> None:
    with pytest.raises(CrewConfigError, match="NUL"):
        parse('[deployment]\nentrypoint = "a.b:c"\n[deployment.env]\nX = "a\\u0000b"\n')


def test_an_env_value_longer_than_the_api_takes_is_a_config_error() -> None:
    # Over 128 KiB no process starts with it (execve: E2BIG); the API stores at most 32 KiB.
    fits = "v" * MAX_ENV_VALUE
    parsed = parse(f'[deployment]\nentrypoint = "a.b:c"\n[deployment.env]\nX = "{fits}"\n')
    assert parsed.select(None).env == {"X": fits}
    with pytest.raises(CrewConfigError, match=f"X: the value is longer than {MAX_ENV_VALUE} characters"):
        parse(f'[deployment]\nentrypoint = "a.b:c"\n[deployment.env]\nX = "{fits}w"\n')


def test_a_deployment_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(CrewConfigError, match="deployment name"):
        parse('[deployments."main\\n"]\nentrypoint = "crew:run"\n')


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "ld_library_path", "PYTHONPATH", "NODE_OPTIONS", "CREWYARD_X"]
)
def test_env_names_that_change_how_programs_load_are_a_config_error(name: str) -> None:
    with pytest.raises(CrewConfigError, match=rf"crewyard.toml: 'deployment.env': {name}"):
        parse(f'[deployment]\nentrypoint = "a.b:c"\n[deployment.env]\n{name} = "x"\n')
    with pytest.raises(CrewConfigError, match="'env'"):
        parse(f'[env]\n{name} = "x"\n[deployment]\nentrypoint = "a.b:c"\n')


def _deployments(count: int, body: str = "") -> str:
    return "".join(f'[deployments.d{i}]\nentrypoint = "crew:run"\n{body}' for i in range(count))


def _array(count: int, item: str = "x") -> str:
    return "[" + ", ".join(f'"{item}{i}"' for i in range(count)) + "]"


def _table(count: int) -> str:
    return "".join(f'V{i} = "x"\n' for i in range(count))


def test_a_file_defines_at_most_64_deployments_as_langgraph_json_graphs() -> None:
    assert MAX_DEPLOYMENTS == 64
    assert len(parse(_deployments(MAX_DEPLOYMENTS)).deployments) == MAX_DEPLOYMENTS
    with pytest.raises(CrewConfigError, match="defines 65 deployments, more than the limit of 64"):
        parse(_deployments(MAX_DEPLOYMENTS + 1))


def test_exclude_lists_are_bounded_the_top_level_counted_in_each_deployment() -> None:
    fits = parse(f"[build]\nexclude = {_array(MAX_EXCLUDES)}\n" + _deployments(2))
    assert len(fits.select("d1").exclude) == MAX_EXCLUDES
    with pytest.raises(
        CrewConfigError, match=r"'build.exclude' has 1001 patterns, more than the limit of 1000"
    ):
        parse(f"[build]\nexclude = {_array(MAX_EXCLUDES + 1)}\n" + _deployments(1))
    own = f"[deployment.build]\nexclude = {_array(MAX_EXCLUDES // 2 + 1, 'own')}\n"
    with pytest.raises(
        CrewConfigError,
        match=r"'deployment.build.exclude' has 1001 patterns \(with the 500 of the top-level \[build\]",
    ):
        parse(f'[build]\nexclude = {_array(MAX_EXCLUDES // 2)}\n[deployment]\nentrypoint = "a:b"\n{own}')


def test_an_exclude_pattern_longer_than_a_path_is_refused() -> None:
    long = "x" * MAX_EXCLUDE_LENGTH
    parsed = parse(f'[deployment]\nentrypoint = "a:b"\n[build]\nexclude = ["{long}"]\n')
    assert parsed.select(None).exclude == [long]
    with pytest.raises(CrewConfigError, match="a pattern longer than the limit of 4096 characters"):
        parse(f'[deployment]\nentrypoint = "a:b"\n[build]\nexclude = ["{long}x"]\n')


def test_env_tables_are_bounded_the_top_level_counted_in_each_deployment() -> None:
    fits = parse(f"[env]\n{_table(MAX_ENV_VARS)}" + _deployments(2))
    assert len(fits.select("d0").env) == MAX_ENV_VARS
    with pytest.raises(CrewConfigError, match=r"'env' sets 257 variables, more than the limit of 256"):
        parse(f"[env]\n{_table(MAX_ENV_VARS + 1)}" + _deployments(1))
    with pytest.raises(
        CrewConfigError,
        match=r"'deployments.d0.env' sets 257 variables \(with the 256 of the top-level \[env\]\)",
    ):
        parse(f"[env]\n{_table(MAX_ENV_VARS)}" + _deployments(1, '[deployments.d0.env]\nOWN = "y"\n'))


def test_the_top_level_exclude_and_env_are_shared_by_deployments_not_copied_into_each() -> None:
    parsed = parse(
        f'[build]\nexclude = ["tests"]\n[env]\nA = "1"\n{_deployments(3)}'
        '[deployments.own]\nentrypoint = "crew:run"\n[deployments.own.build]\nexclude = ["docs"]\n'
        '[deployments.own.env]\nB = "2"\n'
    )
    d0, d1, d2, own = parsed.deployments
    assert d0.exclude is d1.exclude is d2.exclude and d0.exclude == ["tests"]
    assert d0.env is d1.env is d2.env and d0.env == {"A": "1"}
    assert own.exclude == ["tests", "docs"] and own.env == {"A": "1", "B": "2"}
    assert d0.exclude == ["tests"] and d0.env == {"A": "1"}  # the deployment with its own left them alone


def test_an_integer_longer_than_python_converts_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(CrewConfigError, match="not valid TOML"):
        parse('[deployment]\nentrypoint = "a:b"\ntimeout = 1' + "0" * 5000 + "\n")


@pytest.mark.parametrize("file", ["crewyard.toml", "crewship.toml"])
def test_a_lone_surrogate_anywhere_in_the_text_is_a_config_error_that_can_be_encoded(file: str) -> None:
    for text in (
        '[deployment]\nentrypoint = "a:b"\n[deployment.env]\nX = "\ud800"\n',
        '[deployment]\nentrypoint = "a:b"\nprofile = "\udfff"\n',
        '[deployment]\nentrypoint = "a:b"\n[build]\nexclude = ["\udc80"]\n',
        '[deployment]\nentrypoint = "a:b"\n"\ud800" = 1\n',
    ):
        with pytest.raises(CrewConfigError) as info:
            parse(text, file)
        message = str(info.value)
        message.encode("utf-8")  # it reaches a JSON response: it must encode
        assert message.startswith(f"{file}: line ") and "lone surrogate" in message
