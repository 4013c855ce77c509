"""Versions of deployment names and their environments, folded from events (pure)."""

from __future__ import annotations

import msgspec
import pytest

from crewyard.core import versions as v
from crewyard.core.events import (
    DeploymentCreated,
    DeploymentFailed,
    DeploymentPromoted,
    DeploymentReady,
    EnvSet,
    EnvUnset,
    Payload,
    Recorded,
    RunQueued,
    decode,
    make_event,
)
from crewyard.core.ids import deployment_id, new_id, version_id

DIGEST = "sha256-" + "0" * 64
CONFIG = {"entrypoint": "crew:run"}


class History:
    """Events of one project in stream order."""

    def __init__(self, project: str = "acme") -> None:
        self.project = project
        self.records: list[Recorded] = []

    def add(self, payload: Payload, aggregate_id: str) -> None:
        event = make_event(payload, project=self.project, aggregate_id=aggregate_id, event_id=new_id("evt"))
        self.records.append(Recorded(len(self.records) + 1, event))

    def deploy(self, name: str = "default", environment: str = "production", ready: bool = True) -> str:
        dep = new_id("dep")
        created = DeploymentCreated(
            source_digest=DIGEST, source_size=1, config=CONFIG, name=name, environment=environment
        )
        self.add(created, dep)
        if ready:
            self.add(DeploymentReady(env_digest="e", backend="venv"), dep)
        return dep

    def state(self) -> v.Versions:
        return v.fold(self.project, self.records)


def test_versions_are_numbered_per_name_in_stream_order():
    h = History()
    a1, b1, a2 = h.deploy("a"), h.deploy("b"), h.deploy("a")
    state = h.state()
    assert [state.versions[d].number for d in (a1, b1, a2)] == [1, 1, 2]
    assert state.names() == ["a", "b"]


def test_a_ready_version_moves_only_the_environment_its_deploy_named():
    h = History()
    prod = h.deploy()
    staged = h.deploy(environment="staging")
    state = h.state()
    assert state.current("default", "production").id == prod
    assert state.current("default", "staging").id == staged


def test_a_failed_or_building_version_moves_nothing():
    h = History()
    prod = h.deploy()
    failed = h.deploy(ready=False)
    h.add(DeploymentFailed(error_message="boom"), failed)
    h.deploy(ready=False)
    assert h.state().current("default", "production").id == prod


def test_resolve_rules():
    h = History()
    v1 = h.deploy()
    v2 = h.deploy(environment="staging")
    state = h.state()
    # deployment_id alone: exactly that version, run in production's environment
    exact = v.resolve(state, deployment_id=v2)
    assert (exact.deployment_id, exact.number, exact.environment) == (v2, 2, "production")
    # deployment_id with an environment: that environment's version of the same name
    assert v.resolve(state, deployment_id=v2, environment="production").deployment_id == v1
    assert v.resolve(state, deployment_id=v1, environment="staging").deployment_id == v2
    # project alone: the default name in production
    assert v.resolve(state).deployment_id == v1
    assert v.resolve(state, environment="staging").version_id == version_id(v2)
    with pytest.raises(v.InvalidEnvironment):
        v.resolve(state, environment="qa")
    with pytest.raises(v.UnknownVersion):
        v.resolve(state, deployment_id=new_id("dep"))


def test_project_alone_with_several_names_and_no_default_is_ambiguous():
    h = History()
    h.deploy("support")
    only = h.state()
    assert v.resolve(only).name == "support"  # the only name is the default one
    h.deploy("research")
    with pytest.raises(v.AmbiguousDeployment, match="research, support"):
        v.resolve(h.state())
    assert v.resolve(h.state(), name="research").name == "research"
    with pytest.raises(v.UnknownDeployment):
        v.resolve(h.state(), name="nope")


def test_an_environment_without_a_version_and_a_version_not_ready_are_conflicts():
    h = History()
    building = h.deploy(ready=False)
    with pytest.raises(v.NoVersionInEnvironment):
        v.resolve(h.state())
    with pytest.raises(v.VersionNotReady, match="still building"):
        v.resolve(h.state(), deployment_id=building)


def test_promote_copies_one_environment_to_another():
    h = History()
    h.deploy()
    staged = h.deploy(environment="staging")
    promoted = v.decide_promote(h.state(), "default", to="production", from_environment="staging")
    assert promoted.deployment_id == staged and promoted.from_environment == "staging"
    h.add(promoted, "acme")
    assert h.state().current("default", "production").id == staged
    with pytest.raises(v.InvalidEnvironment):
        v.decide_promote(h.state(), "default", to="staging", from_environment="staging")
    fresh = History()
    fresh.deploy()
    with pytest.raises(v.NoVersionInEnvironment):
        v.decide_promote(fresh.state(), "default", to="production", from_environment="staging")
    with pytest.raises(v.UnknownDeployment):
        v.decide_promote(History().state(), "default", to="production", from_environment="staging")


def test_rollback_goes_back_step_by_step_never_back_and_forth():
    h = History()
    first, second, third = h.deploy(), h.deploy(), h.deploy()
    staged_only = h.deploy(environment="staging")
    for expected in (second, first):
        back = v.decide_rollback(h.state(), "default")
        assert back.deployment_id == expected and back.rollback
        h.add(back, "acme")
        assert h.state().current("default", "production").id == expected
    with pytest.raises(v.NoVersionInEnvironment, match="no earlier version"):
        v.decide_rollback(h.state(), "default")
    # An explicit target: any ready version of the name, also one production never ran.
    h.add(v.decide_rollback(h.state(), "default", deployment_id=staged_only), "acme")
    assert h.state().current("default", "production").id == staged_only
    assert third in h.state().versions


def test_rollback_to_a_failed_version_is_refused():
    h = History()
    h.deploy()
    bad = h.deploy(ready=False)
    h.add(DeploymentFailed(error_message="x"), bad)
    with pytest.raises(v.VersionNotReady, match="failed"):
        v.decide_rollback(h.state(), "default", deployment_id=bad)


def test_ver_and_dep_spell_the_same_version():
    dep = new_id("dep")
    assert deployment_id(version_id(dep)) == dep
    assert version_id(dep).startswith("ver_")
    assert deployment_id("run_x") == "run_x"


def _v1(type_: str, aggregate: str, data: dict) -> dict:
    raw = msgspec.json.encode(
        {
            "id": "evt_1",
            "type": type_,
            "version": 1,
            "time": "2026-01-01T00:00:00Z",
            "project": "acme",
            "aggregate": aggregate,
            "aggregate_id": "acme" if aggregate == "project" else "dep_1",
            "data": data,
        }
    )
    return msgspec.to_builtins(decode(raw).data)


def test_deployment_created_v1_is_a_production_deploy_of_the_default_name():
    data = _v1(
        "deployment.created", "deployment", {"source_digest": DIGEST, "source_size": 1, "config": CONFIG}
    )
    assert data["name"] == "default" and data["environment"] == "production"
    named = _v1(
        "deployment.created",
        "deployment",
        {"source_digest": DIGEST, "source_size": 1, "config": CONFIG, "name": "x"},
    )
    assert named["name"] == "x"


def test_deployment_promoted_v1_moves_production():
    data = _v1("deployment.promoted", "project", {"deployment_id": "dep_1", "rollback": True})
    assert data["environment"] == "production" and data["rollback"] is True


def test_env_set_and_unset_v1_apply_to_every_environment():
    assert _v1("env.set", "project", {"key": "K", "value": "c"})["environment"] is None
    assert _v1("env.unset", "project", {"key": "K"})["environment"] is None


def test_run_queued_v1_ran_in_production():
    raw = msgspec.json.encode(
        {
            "id": "evt_1",
            "type": "run.queued",
            "version": 1,
            "time": "2026-01-01T00:00:00Z",
            "project": "acme",
            "aggregate": "run",
            "aggregate_id": "run_1",
            "data": {"deployment_id": "dep_1", "input": {}},
        }
    )
    data = decode(raw).data
    assert isinstance(data, RunQueued) and data.environment == "production"


def test_an_old_stream_folds_to_what_it_meant():
    """Before environments, every ready deployment became current and rollbacks promoted."""
    h = History()
    first, second = h.deploy(), h.deploy()
    h.add(DeploymentPromoted(deployment_id=first, rollback=True), "acme")
    assert h.state().current("default", "production").id == first
    assert h.state().current("default", "staging") is None
    assert second in h.state().versions


def test_scoped_environment_variables_override_unscoped_ones():
    from crewyard.core.deployment_state import fold_project

    h = History()
    h.add(EnvSet(key="A", value="all"), "acme")
    h.add(EnvSet(key="A", value="stage", environment="staging"), "acme")
    h.add(EnvSet(key="B", value="b"), "acme")
    state = fold_project("acme", h.records)
    assert state.env_for("production") == {"A": ("all", "A"), "B": ("b", "B")}
    assert state.env_for("staging") == {"A": ("stage", "A@staging"), "B": ("b", "B")}
    h.add(EnvUnset(key="A", environment="staging"), "acme")
    assert fold_project("acme", h.records).env_for("staging")["A"] == ("all", "A")
