"""The runner's side of the protocol, through the process backend: it answers requests, and it
refuses a runtime that speaks another version (an image built by an older crewyard) clearly."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crewyard.core.events import RunCompleted, RunFailed
from crewyard.runner.protocol import VERSION

if TYPE_CHECKING:
    from conftest import RunCrew

pytestmark = pytest.mark.timeout(60)


def _fake_runtime(folder: Path, main: str) -> Path:
    package = folder / "crewyard_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(main))
    return folder


async def test_a_runtime_from_before_version_2_is_refused_with_a_way_out(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    old = _fake_runtime(
        tmp_path / "old",
        """
        import json, time
        print(json.dumps({"t": "error", "message": "entrypoint '' must look like 'module:attribute'"}))
        """,
    )
    payload = (await run_crew(runtime_dir=old)).payload

    assert isinstance(payload, RunFailed), payload
    assert "older protocol (v1)" in payload.error_message and "deploy the crew again" in payload.error_message


async def test_a_runtime_speaking_a_newer_version_is_stopped_at_once(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    newer = _fake_runtime(
        tmp_path / "newer",
        f"""
        import json, time
        print(json.dumps({{"t": "hello", "v": {VERSION + 1}, "runtime": "python"}}), flush=True)
        time.sleep(120)
        """,
    )
    payload = (await run_crew(runtime_dir=newer)).payload

    # Failed for the version, not after the runtime's two minutes or the run's timeout.
    assert isinstance(payload, RunFailed), payload
    assert f"speaks protocol v{VERSION + 1}; this runner speaks v{VERSION}" in payload.error_message


async def test_a_request_for_an_unknown_operation_gets_a_clean_error_reply(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    source = """
    from crewyard_runtime._protocol import RequestFailed, request

    def run(inputs):
        try:
            request("tables.get", {"name": "x"}, timeout=30)
        except RequestFailed as exc:
            return {"code": exc.code, "message": exc.message}
    """
    payload = (await run_crew(source)).payload

    assert isinstance(payload, RunCompleted), payload
    assert payload.output == {"code": "unknown_op", "message": "this platform has no operation 'tables.get'"}
