"""The platform with its sources and artifacts in an S3-protocol bucket (moto's server on loopback)."""

from __future__ import annotations

from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess


def test_sources_and_artifacts_in_s3(tmp_path, s3_endpoint: str):
    env = {
        "CREWYARD_S3_ENDPOINT": s3_endpoint,
        "CREWYARD_S3_ACCESS_KEY": "test",
        "CREWYARD_S3_SECRET_KEY": "test-secret",
        "CREWYARD_S3_SECURE": "false",
        "CREWYARD_S3_BUCKET": "crewyard-e2e",
    }
    platform = PlatformProcess(tmp_path / "data", env=env).start()
    try:
        with platform.client(timeout=30) as api:
            assert deploy(api, EXAMPLES / "hello", "s3")["status"] == "ready"
            run_id = api.post(
                "/v1/runs", json={"project": "s3", "input": {"topic": "buckets", "delay": 0}}
            ).json()["run_id"]
            assert wait_run(api, run_id)["status"] == "succeeded"
            report = api.get(f"/v1/runs/{run_id}/artifacts/report.md")
            assert report.status_code == 200 and report.text.startswith("# buckets")
    finally:
        platform.stop()
    from minio import Minio

    client = Minio(s3_endpoint, access_key="test", secret_key="test-secret", secure=False)
    names = sorted(o.object_name for o in client.list_objects("crewyard-e2e", recursive=True))
    assert any(n.startswith("sources/") for n in names) and any(n.startswith("artifacts/") for n in names)
