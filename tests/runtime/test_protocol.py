"""The runner ↔ runtime protocol: one document, and both sides (runtime, runner) follow it.

The Python runtime is driven here the way a runner drives it — hello, prepare, ready, start,
requests and replies — with the runner's own encoder, and every line either side writes is
checked against ``crewyard_runtime/protocol.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from crewyard.runner import keepalive, protocol
from crewyard.testing.processes import alive
from crewyard.testing.protocol import RUNNER_TO_RUNTIME, RUNTIME_TO_RUNNER, Driven, document, problems
from crewyard.testing.runtime import LIBS
from crewyard_runtime import _protocol as runtime_protocol

CrewModule = Callable[[str, str], Path]
pytestmark = pytest.mark.timeout(60)

CREW = """
import os, sys
from crewyard_runtime import emit, log
from crewyard_runtime._protocol import RequestFailed, request

print("imported with", os.environ.get("CREW_SECRET"))

def run(inputs):
    print("running", inputs["n"])
    log("from the sdk", "warning")
    emit("tool.called", tool="t", input={"n": inputs["n"]})
    try:
        request("no.such.op", {"x": 1})
        refused = None
    except RequestFailed as exc:
        refused = exc.code
    with open("/proc/self/environ", "rb") as fh:
        started_with = [v.split(b"=")[0].decode() for v in fh.read().split(b"\\0") if v]
    return {
        "n": inputs["n"],
        "refused": refused,
        "stdin": sys.stdin.read(),
        "secret": os.environ.get("CREW_SECRET"),
        "run_id": os.environ.get("CREWYARD_RUN_ID"),
        "process_started_with": started_with,
    }
"""


def _runtime(tmp_path: Path, crew_dir: Path) -> Driven:
    """``python -m crewyard_runtime`` driven line by line, as a runner would."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{LIBS}{os.pathsep}{crew_dir}",
        "CREWYARD_RUN_ID": "run_proto",
        "CREWYARD_ARTIFACTS_DIR": str(tmp_path),
    }
    return Driven([sys.executable, "-m", "crewyard_runtime"], cwd=tmp_path, env=env, timeout=30)


@pytest.fixture
def runtime(tmp_path: Path, crew_module: CrewModule) -> Iterator[Callable[[str], Driven]]:
    started: list[Driven] = []

    def start(source: str) -> Driven:
        rt = _runtime(tmp_path, crew_module("proto_crew", source))
        started.append(rt)
        return rt

    yield start
    for rt in started:
        rt.close()


def _prepare(env: dict[str, str] | None = None, entrypoint: str = "proto_crew:run") -> protocol.Prepare:
    return protocol.Prepare(env=env or {}, entrypoint=entrypoint, framework="python", project="p")


def test_a_run_follows_the_protocol_document_on_both_sides(runtime: Callable[[str], Driven]) -> None:
    rt = runtime(CREW)
    hello = rt.next()
    assert hello == {"t": "hello", "v": protocol.VERSION, "runtime": "python"}
    rt.send(_prepare({"CREW_SECRET": "s3cr3t"}))
    rt.until("ready")
    assert {"t": "log", "level": "info", "message": "imported with s3cr3t", "stream": "stdout"} in rt.seen
    rt.send(protocol.Start(run_id="run_proto", input={"n": 7}))
    request = rt.until("request")
    assert request["op"] == "no.such.op" and request["args"] == {"x": 1}
    decoded = protocol.decode_line(json.dumps(request).encode())
    assert isinstance(decoded, protocol.Request)
    rt.send(protocol.refuse(decoded, "unknown_op", "no such operation"))
    result = rt.until("result")
    assert rt.finish() == 0

    output = result["output"]
    assert output["n"] == 7 and output["refused"] == "unknown_op" and output["run_id"] == "run_proto"
    assert output["stdin"] == "", "the crew must not read the protocol's stdin"
    assert output["secret"] == "s3cr3t"
    assert "CREW_SECRET" not in output["process_started_with"], "prepare.env reached the process's environ"
    kinds = [m["t"] for m in rt.seen]
    assert kinds[0] == "hello" and kinds.index("ready") < kinds.index("request") < kinds.index("result")
    for message in rt.seen:
        assert problems(RUNTIME_TO_RUNNER, message) == [], message
    for message in rt.sent:
        assert problems(RUNNER_TO_RUNTIME, message) == [], message


def test_an_entrypoint_that_does_not_import_is_an_error_before_ready(
    runtime: Callable[[str], Driven],
) -> None:
    rt = runtime("raise ImportError('broken on purpose')\n")
    rt.next()
    rt.send(_prepare())
    error = rt.until("error")
    assert rt.finish() == 1
    assert "broken on purpose" in error["message"]
    assert "ready" not in [m["t"] for m in rt.seen]


@pytest.mark.parametrize(
    "first",
    [None, protocol.Start(run_id="r", input={})],
    ids=["channel closed", "start before prepare"],
)
def test_a_runner_that_breaks_the_protocol_gets_an_error_and_exit_code_2(
    runtime: Callable[[str], Driven], first: protocol.Outgoing | None
) -> None:
    rt = runtime("def run(inputs):\n    return 1\n")
    rt.next()
    if first is not None:
        rt.send(first)
    assert rt.finish() == 2
    error = rt.seen[-1]
    assert error["t"] == "error" and error["error_type"] == "ProtocolError", error


def test_the_document_and_both_implementations_speak_the_same_version() -> None:
    doc = document()
    assert doc["version"] == protocol.VERSION == runtime_protocol.VERSION
    assert doc["max_line_bytes"] == runtime_protocol.MAX_LINE_BYTES


@pytest.mark.parametrize(
    ("direction", "structs"),
    [
        (RUNTIME_TO_RUNNER, msgspec.inspect.type_info(protocol.Message)),
        (RUNNER_TO_RUNTIME, msgspec.inspect.type_info(protocol.Outgoing)),
    ],
    ids=["runtime to runner", "runner to runtime"],
)
def test_the_runners_messages_are_the_documents_messages(direction: str, structs: Any) -> None:
    doc = document()[direction]
    declared = {}
    for info in structs.types:
        fields = {f.name: f.required for f in info.fields}
        declared[info.tag] = fields
    assert declared == {
        kind: {n: f["required"] for n, f in spec["fields"].items()} for kind, spec in doc.items()
    }


# -- the watchdog: keepalives (version 4) --

STAYS = """
import ctypes, os, subprocess, time

def run(inputs):
    child = subprocess.Popen(["sleep", "300"])
    print("child", child.pid)
    time.sleep(float(inputs.get("sleep_s", 0)))
    if inputs.get("hold_s"):
        from crewyard_runtime import _watchdog

        armed_by = time.monotonic() + 20
        while _watchdog._thread is None and time.monotonic() < armed_by:  # set once a keepalive is read
            time.sleep(0.01)
        print("holding")
        ctypes.PyDLL(None).sleep(int(inputs["hold_s"]))  # keeps the interpreter: no thread of it runs
    child.kill()
    return {"ran": True}
"""


def _started(rt: Driven, **inputs: float) -> int:
    """Through start; the pid of the crew's child process."""
    rt.next()
    rt.send(_prepare())
    rt.until("ready")
    rt.send(protocol.Start(run_id="run_proto", input=inputs))
    return rt.child_pid()


def test_a_runtime_whose_keepalives_stop_ends_its_crew_and_the_crews_processes(
    runtime: Callable[[str], Driven],
) -> None:
    rt = runtime(STAYS)
    child = _started(rt, sleep_s=60)
    rt.send(protocol.Keepalive(within=1.0))  # arms the watchdog; none follows (a stalled runner)
    started = time.monotonic()
    code = rt.proc.wait(20)
    waited = time.monotonic() - started

    assert code == -signal.SIGKILL, code  # its group's SIGKILL, itself included
    assert 0.8 <= waited < 10, waited  # the deadline, less the watchdog's own margin
    assert "result" not in [m["t"] for m in rt.seen]
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the crew's child process outlived the watchdog"


def test_a_runtime_kept_alive_runs_to_its_end_and_one_never_kept_alive_never_times_out(
    runtime: Callable[[str], Driven],
) -> None:
    kept = runtime(STAYS)
    _started(kept, sleep_s=2.5)
    with kept.kept_alive(within=1.0, every=0.25):
        assert kept.until("result")["output"] == {"ran": True}
    assert kept.finish() == 0

    never = runtime(STAYS)  # an older runner sends none: the watchdog is never armed
    _started(never, sleep_s=1.5)
    assert never.until("result")["output"] == {"ran": True}
    assert never.finish() == 0


def test_a_crew_that_keeps_the_interpreter_is_ended_at_the_deadline_not_when_it_lets_go(
    runtime: Callable[[str], Driven],
) -> None:
    """No thread of the runtime runs while a crew's C call keeps the interpreter (15 s here):
    faulthandler's timer, a C thread, ends the process at the deadline all the same."""
    hold = 15
    rt = runtime(STAYS)
    _started(rt, hold_s=hold)
    rt.send(protocol.Keepalive(within=4.0))  # the crew keeps the interpreter once it was read
    while rt.until("log")["message"] != "holding":
        pass
    started = time.monotonic()  # the hold began before this: it ends no sooner than ``hold`` on
    code = rt.proc.wait(30)

    assert code == 1, code  # faulthandler's exit
    assert time.monotonic() - started < hold, "the crew was ended only when it let the interpreter go"


@pytest.mark.parametrize(
    ("within", "deadline_in", "boot"),
    [(30.0, 1.0, keepalive.BOOT), (1.0, 30.0, "another machine")],
    ids=["the runner's clock on this machine", "from when it is read on another machine"],
)
def test_a_keepalives_deadline_is_the_runners_own_where_the_clock_is_shared(
    runtime: Callable[[str], Driven], within: float, deadline_in: float, boot: str | None
) -> None:
    rt = runtime(STAYS)
    _started(rt, sleep_s=60)
    rt.send(protocol.Keepalive(within=within, deadline=time.monotonic() + deadline_in, boot=boot))
    started = time.monotonic()
    assert rt.proc.wait(20) == -signal.SIGKILL
    assert time.monotonic() - started < 10  # not the 30 s of the other figure


def test_keepalives_read_after_their_deadline_while_the_crew_was_imported_end_nothing(
    runtime: Callable[[str], Driven],
) -> None:
    """Keepalives a runner's stall kept back (as when they queued behind a long import before
    the runtime read its input in a thread of its own) come at once: the first ones are past
    their deadline, the ones behind them are not, and the runner is alive all along. Each one
    past its deadline gives the next a quarter of a second to be read."""
    rt = runtime("import time\ntime.sleep(2.5)\n\ndef run(inputs):\n    time.sleep(1)\n    return 1\n")
    rt.next()
    rt.send(_prepare())
    rt.send(protocol.Start(run_id="run_proto", input={}))
    sent = time.monotonic()
    for past in range(20, 0, -1):  # what a stalled runner's connection held, oldest first
        rt.send(protocol.Keepalive(within=1.0, deadline=sent - past * 0.01, boot=keepalive.BOOT))
    rt.send(protocol.Keepalive(within=30.0, deadline=sent + 30, boot=keepalive.BOOT))
    assert rt.until("result")["output"] == 1
    assert rt.finish() == 0


def test_a_message_the_reader_cannot_act_on_ends_the_runtime_instead_of_a_wait_forever(
    runtime: Callable[[str], Driven],
) -> None:
    """A line nested deeper than the JSON reader goes (its thread raised RecursionError, and the
    runtime then waited for a start no thread would ever read): a protocol error, exit 2. A
    keepalive bound further than the watchdog's timer goes is the furthest it takes."""
    rt = runtime(CREW)
    rt.next()
    rt.send(_prepare())
    rt.until("ready")
    rt.send(protocol.Keepalive(within=1e20))
    assert rt.proc.stdin is not None
    rt.proc.stdin.write(b'{"t": "keepalive", "within": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n")
    rt.proc.stdin.flush()
    error = rt.until("error")
    assert "could not be read" in error["message"] and "RecursionError" in error["message"], error
    assert rt.proc.wait(20) == 2


def test_a_cold_starts_import_is_watched_too(runtime: Callable[[str], Driven]) -> None:
    """Keepalives are read while the crew is imported: a runner that stops during a long import
    (3 s here) has its run ended there, before the crew's code runs."""
    rt = runtime("import time\ntime.sleep(3)\n\ndef run(inputs):\n    print('ran')\n    return 1\n")
    rt.next()
    rt.send(_prepare())
    rt.send(protocol.Start(run_id="run_proto", input={}))
    rt.send(protocol.Keepalive(within=0.5, deadline=time.monotonic() + 0.5, boot=keepalive.BOOT))
    started = time.monotonic()
    assert rt.proc.wait(20) == -signal.SIGKILL
    assert time.monotonic() - started < 2.5, "the import ran to its end"
    assert "ran" not in [m.get("message") for m in rt.seen]


FORKS = """
import os, sys, time

def run(inputs):
    time.sleep(0.5)  # the first keepalive is read meanwhile: the watchdog is armed
    pid = os.fork()
    if pid == 0:
        sys.exit(3)  # a crew's own fork that ends as a script does, not with os._exit
    deadline = time.monotonic() + 3
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if not done[0]:
        os.kill(pid, 9)
    return {"child": os.waitstatus_to_exitcode(done[1]) if done[0] else "hung at its exit"}
"""


@pytest.mark.parametrize("linger", [False, True], ids=["", "asked to linger"])
def test_a_crews_own_fork_ends_as_it_would_with_the_watchdog_armed(
    runtime: Callable[[str], Driven], linger: bool
) -> None:
    """faulthandler's timer thread is not copied by a fork, and an interpreter that finalizes
    waits for it: a crew's child whose ``sys.exit`` came back through the runtime must end with
    the runtime's ``os._exit`` (code 1: its SystemExit is the child's error), not hang there,
    nor wait for an end of input that only its parent's reader thread would see."""
    rt = runtime(FORKS)
    rt.next()
    rt.send(msgspec.structs.replace(_prepare(), linger=linger))
    rt.until("ready")
    rt.send(protocol.Start(run_id="run_proto", input={}))
    with rt.kept_alive(within=2.0, every=0.25):
        assert rt.until("result")["output"] == {"child": 1}
    rt.ends_as_asked(linger)


@pytest.mark.parametrize("linger", [True, False], ids=["asked to linger", "not asked"])
def test_a_runtime_asked_to_linger_exits_once_its_input_ends(
    runtime: Callable[[str], Driven], linger: bool
) -> None:
    """A container's runtime must not end while the runner may still write to it (Podman reports
    a write that meets its end on the run's output): asked, it waits for its input to end."""
    rt = runtime("def run(inputs):\n    return 1\n")
    rt.next()
    rt.send(msgspec.structs.replace(_prepare(), linger=linger))
    rt.send(protocol.Start(run_id="run_proto", input={}))
    rt.send(protocol.Keepalive(within=30.0))
    assert rt.until("result")["output"] == 1
    rt.ends_as_asked(linger)
