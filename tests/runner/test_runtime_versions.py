"""The runner's side of the protocol, through the process backend: it answers requests, and it
refuses a runtime that speaks another version (an image built by an older crewyard) clearly."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crewyard.core.events import RunCompleted, RunFailed
from crewyard.runner.backends import ExitStatus, Limits
from crewyard.runner.execution import decide_outcome
from crewyard.runner.output import Outcome
from crewyard.runner.protocol import KEEPALIVE_SINCE, SPOKEN, VERSION, Result

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


async def test_a_hello_too_long_for_a_line_is_not_taken_for_an_older_runtime(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    padded = _fake_runtime(
        tmp_path / "padded",
        """
        import json, time
        print(json.dumps({"t": "hello", "v": 2, "runtime": "x" * 200_000}), flush=True)
        time.sleep(120)
        """,
    )
    payload = (await run_crew(runtime_dir=padded)).payload

    assert isinstance(payload, RunFailed), payload
    assert "said hello in a line of over" in payload.error_message, payload.error_message
    assert "older protocol" not in payload.error_message


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


#: A runtime saying hello in ``version`` that answers with the kinds of lines it got, once it has
#: seen ``keepalives`` keepalives (at most ``within`` seconds), and ``linger`` seconds after that.
KINDS = """
import json, sys, threading, time
said = lambda m: print(json.dumps(m), flush=True)
said({{"t": "hello", "v": {version}, "runtime": "python"}})
kinds, got = [], threading.Condition()
def read():
    for line in sys.stdin:
        with got:
            kinds.append(json.loads(line)["t"])
            got.notify()
threading.Thread(target=read, daemon=True).start()
said({{"t": "ready"}})
with got:
    got.wait_for(lambda: kinds.count("keepalive") >= {keepalives}, timeout={within})
time.sleep({linger})
with got:
    said({{"t": "result", "output": {{"kinds": list(kinds)}}}})
"""


@pytest.mark.parametrize("version", [VERSION, min(SPOKEN)], ids=["this version", "the oldest spoken"])
async def test_keepalives_go_only_to_a_runtime_that_takes_them(
    run_crew: RunCrew, tmp_path: Path, version: int
) -> None:
    """A runtime of an image built before keepalives runs as before, and is sent none (its
    ``expect`` would take one for a broken protocol); a current one gets one each renewal."""
    # A current runtime waits for its third keepalive (some renewals after the first); an older
    # one for 1.5 s, seven renewals' time, in which it must get none.
    current = version >= KEEPALIVE_SINCE
    main = KINDS.format(version=version, keepalives=3, within=30 if current else 1.5, linger=0)
    runtime = _fake_runtime(tmp_path / f"v{version}", main)
    payload = (await run_crew(runtime_dir=runtime, lease_s=2.4)).payload  # renewals every 0.2 s

    assert isinstance(payload, RunCompleted), payload
    kinds = payload.output["kinds"]
    assert kinds[:2] == ["prepare", "start"]
    if current:
        assert kinds.count("keepalive") >= 3, kinds
    else:
        assert "keepalive" not in kinds, kinds


async def test_a_runtime_gets_its_first_keepalive_at_once_not_at_the_next_renewal(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    """A runner stopped right after start must leave an armed watchdog: the first keepalive
    follows hello, not the lease's next renewal (50 s away under a 600 s lease: later than the
    runtime waits for one)."""
    main = KINDS.format(version=VERSION, keepalives=1, within=30, linger=0.5)
    runtime = _fake_runtime(tmp_path / "first", main)
    payload = (await run_crew(runtime_dir=runtime, lease_s=600)).payload

    assert isinstance(payload, RunCompleted), payload
    assert payload.output["kinds"].count("keepalive") == 1, payload.output


async def test_a_result_stands_whatever_the_runtime_exits_with_after_it(
    run_crew: RunCrew, tmp_path: Path
) -> None:
    """Once its result is read the run has completed: a crew's thread that ends the process with
    another code afterwards (while the runtime lingers for its input's end) changes nothing."""
    after = _fake_runtime(
        tmp_path / "after",
        f"""
        import json, os, sys

        def say(message):
            sys.stdout.write(json.dumps(message) + "\\n")
            sys.stdout.flush()

        say({{"t": "hello", "v": {VERSION}, "runtime": "python"}})
        for line in sys.stdin:
            if json.loads(line)["t"] == "start":
                say({{"t": "result", "output": {{"ok": True}}}})
                os._exit(3)
        """,
    )
    payload = (await run_crew(runtime_dir=after)).payload

    assert isinstance(payload, RunCompleted), payload
    assert payload.output == {"ok": True}


def test_a_result_read_before_the_time_ran_out_completes_the_run() -> None:
    """The runtime lingers after its result for its input's end (at most 5 s where the input
    cannot be ended early): a timeout, or an exit status never learnt, after it changes nothing."""
    outcome = Outcome(result=Result(output={"ok": True}))
    for status, timed_out in ((None, None), (ExitStatus(code=0), 30.0), (None, 30.0)):
        payload = decide_outcome(
            outcome=outcome,
            status=status,
            canceled=None,
            timed_out=timed_out,
            started=time.monotonic(),
            limits=Limits(),
        )
        assert isinstance(payload, RunCompleted) and payload.output == {"ok": True}, (
            status,
            timed_out,
            payload,
        )
