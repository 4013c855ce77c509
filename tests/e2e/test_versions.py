"""Versions and environments: a deploy adds a numbered version; staging and production run
what their pointers say; promote and rollback move a pointer without building anything; env
vars scoped to one environment; a rebuilt read model equals the live one."""

from __future__ import annotations

from pathlib import Path

import httpx

from crewyard.testing.api import deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.readmodels import assert_rebuild_equals_live

CREW = """
import os
VERSION = {version!r}

def run(inputs):
    # Reversed: secret values are redacted from everything a run reports.
    return {{"version": VERSION, "scoped": os.environ.get("SCOPED", "")[::-1]}}
"""


def _crew(tmp_path: Path, version: str, name: str | None = None) -> Path:
    folder = write_crew(tmp_path / f"crew-{version}-{name}", CREW.format(version=version))
    if name:
        (folder / "crewyard.toml").write_text(
            f'[deployments.{name}]\nframework = "python"\nentrypoint = "crew:run"\n'
        )
    return folder


def _run(api: httpx.Client, **body) -> dict:
    r = api.post("/v1/runs", json={"input": {}, **body})
    assert r.status_code == 202, r.text
    accepted = r.json()
    run = wait_run(api, accepted["run_id"])
    assert run["status"] == "succeeded", run
    assert (run["version_id"], run["version_number"]) == (accepted["version_id"], accepted["version_number"])
    return run


def test_staging_promote_rollback_and_scoped_env(api: httpx.Client, platform: PlatformProcess, tmp_path):
    p = "envs"
    one = deploy(api, _crew(tmp_path, "one"), p)
    assert (one["version_number"], one["environments"], one["current"]) == (1, ["production"], True)
    assert one["version_id"] == "ver_" + one["deployment_id"][4:]

    # A staging deploy: production keeps running version 1.
    two = deploy(api, _crew(tmp_path, "two"), p, environment="staging")
    assert (two["version_number"], two["environments"], two["current"]) == (2, ["staging"], False)
    prod = _run(api, project=p)
    assert (prod["output"]["version"], prod["version_number"], prod["environment"]) == (
        "one",
        1,
        "production",
    )
    staged = _run(api, project=p, environment="staging")
    assert (staged["output"]["version"], staged["version_number"], staged["environment"]) == (
        "two",
        2,
        "staging",
    )
    # deployment_id alone is exactly that version; with an environment, that environment's.
    assert _run(api, deployment_id=two["version_id"])["output"]["version"] == "two"
    assert (
        _run(api, deployment_id=two["deployment_id"], environment="production")["output"]["version"] == "one"
    )

    overview = api.get(f"/v1/projects/{p}/deployments/default").json()
    assert overview["versions"] == 2
    assert overview["environments"]["production"]["version_number"] == 1
    assert overview["environments"]["staging"]["version_number"] == 2

    # Promote: no build, no new version; the next production run is version 2.
    r = api.post(
        f"/v1/projects/{p}/deployments/default/promote", json={"from": "staging", "to": "production"}
    )
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["version_number"], moved["previous_deployment_id"]) == (2, one["deployment_id"])
    listing = api.get(f"/v1/projects/{p}/deployments").json()["deployments"]
    assert len(listing) == 2
    assert {d["version_number"]: d["environments"] for d in listing} == {2: ["production", "staging"], 1: []}
    assert _run(api, project=p)["output"]["version"] == "two"

    # Rollback: production goes back to what it ran before.
    r = api.post(f"/v1/projects/{p}/deployments/default/rollback", json={"environment": "production"})
    assert r.status_code == 200 and r.json()["version_number"] == 1 and r.json()["rollback"] is True
    assert _run(api, project=p)["output"]["version"] == "one"
    assert _run(api, project=p, environment="staging")["output"]["version"] == "two"
    nothing = api.post(f"/v1/projects/{p}/deployments/default/rollback", json={"environment": "production"})
    assert nothing.status_code == 409 and "no earlier version" in nothing.json()["error"]["message"]

    # Environment variables scoped to one environment override the unscoped value there only.
    assert api.put(f"/v1/projects/{p}/env/SCOPED", json={"value": "everywhere"}).status_code == 200
    r = api.put(f"/v1/projects/{p}/env/SCOPED", json={"value": "staging only", "environment": "staging"})
    assert r.status_code == 200
    assert _run(api, project=p)["output"]["scoped"] == "everywhere"[::-1]
    assert _run(api, project=p, environment="staging")["output"]["scoped"] == "staging only"[::-1]
    env = api.get(f"/v1/projects/{p}/env").json()["env"]
    assert [(e["key"], e["environment"]) for e in env] == [("SCOPED", None), ("SCOPED", "staging")]
    assert api.delete(f"/v1/projects/{p}/env/SCOPED", params={"environment": "staging"}).status_code == 200
    assert _run(api, project=p, environment="staging")["output"]["scoped"] == "everywhere"[::-1]

    # Bad requests are 4xx naming the problem.
    bad = api.post("/v1/runs", json={"project": p, "environment": "qa"})
    assert bad.status_code == 400 and "qa" in bad.json()["error"]["message"]
    r = api.post(f"/v1/projects/{p}/deployments/default/promote", json={"from": "staging", "to": "staging"})
    assert r.status_code == 400
    r = api.post(f"/v1/projects/{p}/deployments/default/promote", json={"to": "qa"})
    assert r.status_code == 400
    assert api.post(f"/v1/projects/{p}/deployments/nope/promote", json={"from": "staging"}).status_code == 404
    assert api.get(f"/v1/deployments/{two['version_id']}").json()["deployment_id"] == two["deployment_id"]

    assert_rebuild_equals_live(platform.nats_url, platform.data_dir, tmp_path / "rebuilt.sqlite3")


def test_several_names_without_a_default_must_be_chosen(api: httpx.Client, tmp_path):
    p = "names"
    deploy(api, _crew(tmp_path, "a", "alpha"), p, name="alpha")
    assert _run(api, project=p)["output"]["version"] == "a"  # the only name
    beta = deploy(api, _crew(tmp_path, "b", "beta"), p, name="beta")
    assert beta["version_number"] == 1 and beta["name"] == "beta"
    r = api.post("/v1/runs", json={"project": p, "input": {}})
    assert r.status_code == 409
    assert "alpha, beta" in r.json()["error"]["message"]
    assert _run(api, project=p, name="beta")["output"]["version"] == "b"
    staging = api.post("/v1/runs", json={"project": p, "name": "beta", "environment": "staging"})
    assert staging.status_code == 409 and "staging" in staging.json()["error"]["message"]
