"""Everything survives a restart of the whole platform, and a rebuild reproduces the read model."""

from __future__ import annotations

import asyncio

from crewyard import settings as settings_mod
from crewyard.platform import rebuild_projection
from crewyard.readmodel import ReadModel
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess


async def _dump(path):
    rm = await ReadModel.open(path)
    try:
        return await rm.dump()
    finally:
        await rm.close()


def test_restart_keeps_everything_and_rebuild_is_identical(tmp_path):
    platform = PlatformProcess(tmp_path / "data").start()
    try:
        with platform.client(timeout=30) as api:
            dep = deploy(api, EXAMPLES / "hello", "durable")
            runs = [
                api.post(
                    "/v1/runs", json={"project": "durable", "input": {"topic": f"t{i}", "delay": 0}}
                ).json()["run_id"]
                for i in range(3)
            ]
            for run_id in runs:
                assert wait_run(api, run_id)["status"] == "succeeded"
            api.put("/v1/projects/durable/env/GREETING", json={"value": "hello there"})
            before_runs = {r: api.get(f"/v1/runs/{r}").json() for r in runs}
            report = api.get(f"/v1/runs/{runs[0]}/artifacts/report.md").content
    finally:
        platform.stop()

    platform.start()
    try:
        with platform.client(timeout=30) as api:
            assert api.get(f"/v1/deployments/{dep['deployment_id']}").json()["status"] == "ready"
            for run_id, before in before_runs.items():
                assert api.get(f"/v1/runs/{run_id}").json() == before
            assert api.get(f"/v1/runs/{runs[0]}/artifacts/report.md").content == report
            assert [e["key"] for e in api.get("/v1/projects/durable/env").json()["env"]] == ["GREETING"]
            # And the platform still works after the restart.
            again = api.post("/v1/runs", json={"project": "durable", "input": {"delay": 0}}).json()["run_id"]
            assert wait_run(api, again)["status"] == "succeeded"
            db = platform.data_dir / "readmodel.sqlite3"
            before = asyncio.run(_dump(db))
            s = settings_mod.load(platform.data_dir, nats_url=platform.nats_url)
            replayed = asyncio.run(rebuild_projection(s))
            after = asyncio.run(_dump(db))
            assert replayed >= 20
            assert after == before
            # The running projector follows on from the rebuilt position.
            third = api.post("/v1/runs", json={"project": "durable", "input": {"delay": 0}}).json()["run_id"]
            assert wait_run(api, third)["status"] == "succeeded"
    finally:
        platform.stop()
