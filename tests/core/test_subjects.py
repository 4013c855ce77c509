"""The subject scheme: what lives where, and what an outside consumer of a project can match."""

import pytest

from crewyard.core import subjects
from crewyard.core.asyncapi import document
from crewyard.core.events import PAYLOAD_TYPES, EnvSet, EnvUnset, ProjectCreated, make_event, public_types


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def _subject(payload, project="acme", aggregate_id="acme"):
    e = make_event(payload, project=project, aggregate_id=aggregate_id, event_id="evt_x")
    return subjects.subject_for(e.data.SCOPE, e.project, e.aggregate, e.aggregate_id, e.type)


def test_secret_bearing_events_live_outside_their_projects_subjects():
    secret = [t for t, cls in PAYLOAD_TYPES.items() if cls.SCOPE == "secret"]
    assert sorted(secret) == ["env.set", "env.unset"]
    for payload in (EnvSet(key="K", value="sealed"), EnvUnset(key="K")):
        subject = _subject(payload)
        assert subject == f"crewyard.evt._secret.project.acme.{payload.TYPE}"
        assert not _matches(subjects.project_filter("acme"), subject)
        assert _matches(subjects.project_aggregate_filter("acme"), subject)
    assert _matches(subjects.project_aggregate_filter("acme"), _subject(ProjectCreated(name="acme")))
    assert not _matches(
        subjects.project_aggregate_filter("acme"), _subject(ProjectCreated(name="b"), "b", "b")
    )


def test_platform_events_live_in_the_platform_stream():
    platform = sorted(t for t, cls in PAYLOAD_TYPES.items() if cls.SCOPE == "platform")
    assert platform == ["apikey.created", "apikey.revoked", "consumer.created", "consumer.revoked"]
    for t in platform:
        cls = PAYLOAD_TYPES[t]
        subject = subjects.subject_for("platform", "_platform", cls.AGGREGATE, "x", t)
        assert subject.startswith(subjects.PLATFORM_PREFIX + ".")
        assert not _matches(subjects.all_events(), subject)


@pytest.mark.parametrize("scope", [subjects.SECRET_SCOPE, subjects.PLATFORM_SCOPE])
def test_reserved_scopes_can_never_be_project_names(scope: str):
    with pytest.raises(subjects.InvalidName):
        subjects.check_project_name(scope)


def test_consumer_filters_match_the_projects_public_events_and_nothing_secret_even_in_old_streams():
    filters = subjects.consumer_filters("acme", public_types("project"))
    public = [
        "crewyard.evt.acme.run.run_1.run.queued",
        "crewyard.evt.acme.run.run_1.tool.called",
        "crewyard.evt.acme.deployment.dep_1.deployment.ready",
        "crewyard.evt.acme.project.acme.project.created",
        "crewyard.evt.acme.project.acme.deployment.promoted",
    ]
    hidden = [
        "crewyard.evt._secret.project.acme.env.set",
        "crewyard.evt.acme.project.acme.env.set",  # where older versions stored it
        "crewyard.evt.acme.project.acme.apikey.created",  # never written, but never shown either
        "crewyard.evt.other.run.run_2.run.queued",
        "crewyard.platform.consumer.con_1.consumer.created",
    ]
    assert all(any(_matches(f, s) for f in filters) for s in public)
    assert not any(_matches(f, s) for f in filters for s in hidden)


def test_no_run_or_deployment_event_is_secret_bearing():
    """Outside consumers receive every run and deployment event by aggregate wildcard."""
    for cls in PAYLOAD_TYPES.values():
        if cls.AGGREGATE in ("run", "deployment"):
            assert cls.SCOPE == "project", cls.TYPE


def test_asyncapi_addresses_follow_the_scopes():
    channels = document()["channels"]
    assert channels["env_set"]["address"] == "crewyard.evt._secret.project.{project}.env.set"
    assert channels["apikey_created"]["address"] == "crewyard.platform.apikey.{aggregateId}.apikey.created"
    assert channels["run_queued"]["address"] == "crewyard.evt.{project}.run.{aggregateId}.run.queued"
