"""What a run gets from its crew's config and what it says about settings it did not honour."""

from __future__ import annotations

from crewyard.core.crewfile import CrewConfig
from crewyard.runner.execution import limits_for, run_warnings


def test_a_crew_asking_for_the_hosts_network_gets_its_own_unless_the_operator_allows_it() -> None:
    config = CrewConfig(entrypoint="crew:run", network="host")

    assert limits_for(config).network == "default"
    assert limits_for(config, allow_host_network=True).network == "host"
    warnings = run_warnings(config, [], allow_host_network=False, isolated=True)
    assert len(warnings) == 1 and 'network = "host" is not available' in warnings[0]
    assert run_warnings(config, [], allow_host_network=True, isolated=True) == []


def test_refused_env_names_and_an_unisolated_backend_are_said_before_the_crew_starts() -> None:
    warnings = run_warnings(
        CrewConfig(entrypoint="crew:run"),
        ["LD_PRELOAD", "PYTHONPATH"],
        allow_host_network=False,
        isolated=False,
    )
    assert [w.split(" ")[2] for w in warnings[:2]] == ["LD_PRELOAD", "PYTHONPATH"]
    assert "NOT isolated" in warnings[2]
