"""The Node runtime (``crewyard_runtime/node``) against the one protocol document.

It is driven the way a runner drives it — started as the backends start it (the same shell step
that gives it its own channels), hello, prepare, ready, start, requests and replies, with the
runner's own encoder — and every line either side writes is checked against
``crewyard_runtime/protocol.json``, as the Python runtime is in ``test_protocol.py``. The crews'
environment is built for real (npm in the build sandbox), so tsx runs their TypeScript.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildRequest, VenvBuilder, nodejs
from crewyard.runner import protocol
from crewyard.runner.backends._base import NODE_CHANNELS
from crewyard.testing.processes import alive
from crewyard.testing.protocol import RUNNER_TO_RUNTIME, RUNTIME_TO_RUNNER, Driven, document, problems

RUNTIME = Path(__file__).resolve().parents[2] / "libs" / "crewyard_runtime" / "node"
pytestmark = pytest.mark.timeout(300)

CREW = """
import { execSync } from "node:child_process";
import { readFileSync } from "node:fs";

type Input = { n: number };
console.log("imported with", process.env.CREW_SECRET);

export async function run(input: Input) {
  console.log("running", input.n);
  process.stdout.write("a line in ");
  process.stdout.write("two writes\\n");
  execSync("echo raw bytes from a child", { stdio: "inherit" });
  const sdk = (globalThis as any).crewyard;
  sdk.log("from the sdk", "warning");
  sdk.emit("tool.called", { tool: "t", input: { n: input.n } });
  let refused = null;
  try {
    await sdk.request("no.such.op", { x: 1 });
  } catch (err: any) {
    refused = err.code;
  }
  const startedWith = readFileSync("/proc/self/environ", "latin1").split("\\0").map((v) => v.split("=")[0]);
  return {
    n: input.n,
    refused,
    secret: process.env.CREW_SECRET,
    runId: process.env.CREWYARD_RUN_ID,
    processStartedWith: startedWith,
    big: 10n ** 20n,
  };
}
"""


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.fixture(scope="session")
def node_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An environment for crews without dependencies (the runtime's tsx), built in the sandbox."""
    crew = tmp_path_factory.mktemp("node-crew")
    (crew / "package.json").write_text('{"name": "crew", "private": true}\n')
    request = BuildRequest(
        deployment_id="dep_node", project="tests", source_dir=crew, source_digest="sha256-node",
        config=CrewConfig(entrypoint="./crew.ts:run", framework="langgraph-js"),
    )  # fmt: skip
    builder = VenvBuilder(tmp_path_factory.mktemp("node-cache"))
    result = asyncio.run(builder.build(request, _quiet))
    assert result.venv_dir is not None
    return result.venv_dir


def _node_runtime(env_dir: Path, crew_dir: Path, work: Path) -> Driven:
    """The Node runtime in a process of its own, driven line by line as a runner would."""
    node = nodejs.installed()
    assert node is not None, "Node.js must be installed (scripts/install-system.sh)"
    command = [
        "/bin/sh",
        "-c",
        NODE_CHANNELS,
        node.path,
        str(RUNTIME / "main.mjs"),
        str(env_dir),
        str(crew_dir),
    ]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "CREWYARD_RUN_ID": "run_node",
           "CREWYARD_ARTIFACTS_DIR": str(work)}  # fmt: skip
    return Driven(command, cwd=work, env=env, timeout=120)


@pytest.fixture
def node_runtime(node_env: Path, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Driven]]:
    started: list[Driven] = []

    def start(files: dict[str, str]) -> Driven:
        crew = tmp_path / "crew"
        for name, text in {"package.json": '{"type": "module"}', **files}.items():
            (crew / name).parent.mkdir(parents=True, exist_ok=True)
            (crew / name).write_text(text)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        rt = _node_runtime(node_env, crew, work)
        started.append(rt)
        return rt

    yield start
    for rt in started:
        rt.close()


def _prepare(entrypoint: str, env: dict[str, str] | None = None) -> protocol.Prepare:
    return protocol.Prepare(env=env or {}, entrypoint=entrypoint, framework="langgraph-js", project="p")


def test_a_node_run_follows_the_protocol_document_on_both_sides(
    node_runtime: Callable[..., Driven],
) -> None:
    rt = node_runtime({"src/crew.ts": CREW})
    assert rt.next() == {"t": "hello", "v": protocol.VERSION, "runtime": "node"}
    rt.send(_prepare("./src/crew.ts:run", {"CREW_SECRET": "s3cr3t"}))
    rt.until("ready")
    assert {"t": "log", "level": "info", "message": "imported with s3cr3t", "stream": "stdout"} in rt.seen
    rt.send(protocol.Start(run_id="run_node", input={"n": 7}))
    request = rt.until("request")
    assert request["op"] == "no.such.op" and request["args"] == {"x": 1}
    decoded = protocol.decode_line(json.dumps(request).encode())
    assert isinstance(decoded, protocol.Request)
    rt.send(protocol.refuse(decoded, "unknown_op", "no such operation"))
    result = rt.until("result")
    assert rt.finish() == 0

    output = result["output"]
    assert output["n"] == 7 and output["refused"] == "unknown_op" and output["runId"] == "run_node"
    assert output["secret"] == "s3cr3t" and output["big"] == "100000000000000000000"
    assert "CREW_SECRET" not in output["processStartedWith"], "prepare.env reached the process's environ"
    logs = [(m.get("message"), m.get("stream")) for m in rt.seen if m["t"] == "log"]
    assert ("running 7", "stdout") in logs and ("a line in two writes", "stdout") in logs
    assert ("from the sdk", "sdk") in logs
    assert {"t": "event", "type": "tool.called", "data": {"tool": "t", "input": {"n": 7}}} in rt.seen
    assert b"raw bytes from a child" in rt.stderr, "a child's raw output goes to stderr, never the protocol"
    kinds = [m["t"] for m in rt.seen]
    assert kinds[0] == "hello" and kinds.index("ready") < kinds.index("request") < kinds.index("result")
    for message in rt.seen:
        assert problems(RUNTIME_TO_RUNNER, message) == [], message
    for message in rt.sent:
        assert problems(RUNNER_TO_RUNTIME, message) == [], message


def test_a_crew_that_throws_reports_its_type_message_and_stack(
    node_runtime: Callable[..., Driven],
) -> None:
    rt = node_runtime(
        {
            "crew.mts": "class QuotaExceeded extends Error { name = 'QuotaExceeded' }\n"
            "function deep() { throw new QuotaExceeded('no more tokens'); }\n"
            "export const run = async (input: object) => deep();\n"
        }
    )
    rt.next()
    rt.send(_prepare("./crew.mts:run"))
    rt.send(protocol.Start(run_id="run_node", input={}))
    error = rt.until("error")
    assert rt.finish() == 1
    assert error["error_type"] == "QuotaExceeded" and error["message"] == "QuotaExceeded: no more tokens"
    assert "at deep" in error["traceback"]
    assert problems(RUNTIME_TO_RUNNER, error) == []


@pytest.mark.parametrize(
    ("files", "entrypoint", "error_type", "words"),
    [
        ({"crew.ts": "import 'left-pad';\nexport const run = () => 1;\n"}, "./crew.ts:run",
         "MissingDependency", "package 'left-pad' is not installed (imported by './crew.ts')"),
        ({"crew.ts": "export const other = () => 1;\n"}, "./crew.ts:run",
         "EntrypointError", "'./crew.ts' has no export 'run'; it exports: other"),
        ({}, "./src/missing.ts:graph", "EntrypointError", "entrypoint file './src/missing.ts' not found"),
        ({"crew.ts": "throw new TypeError('broken on purpose');\n"}, "./crew.ts:run",
         "TypeError", "broken on purpose"),
    ],
    ids=["missing package", "missing export", "missing file", "import raises"],
)  # fmt: skip
def test_an_entrypoint_that_does_not_load_is_an_error_before_ready(
    node_runtime: Callable[..., Driven],
    files: dict[str, str],
    entrypoint: str,
    error_type: str,
    words: str,
) -> None:
    rt = node_runtime(files)
    rt.next()
    rt.send(_prepare(entrypoint))
    error = rt.until("error")
    assert rt.finish() == 1
    assert error["error_type"] == error_type and words in error["message"], error
    assert "ready" not in [m["t"] for m in rt.seen]


def test_commonjs_crews_run_too(node_runtime: Callable[..., Driven]) -> None:
    rt = node_runtime(
        {
            "package.json": "{}",
            "lib/crew.cts": "const twice = (n: number) => n * 2;\n"
            "module.exports = { run: (input: { n: number }) =>"
            " ({ twice: twice(input.n), cjs: typeof require }) };\n",
            "main.js": "exports.run = require('./lib/crew.cts').run;\n",
        }
    )
    rt.next()
    rt.send(_prepare("./main.js:run"))
    rt.send(protocol.Start(run_id="run_node", input={"n": 21}))
    result = rt.until("result")
    assert rt.finish() == 0
    assert result["output"] == {"twice": 42, "cjs": "function"}


def test_a_thread_run_is_refused_rather_than_run_without_its_state(
    node_runtime: Callable[..., Driven],
) -> None:
    rt = node_runtime({"crew.ts": "export const run = () => ({ ran: true });\n"})
    rt.next()
    rt.send(_prepare("./crew.ts:run"))
    rt.send(protocol.Start(run_id="run_node", input={}, thread=protocol.ThreadStart(id="thr_1")))
    error = rt.until("error")
    assert rt.finish() == 1
    assert "threads are not supported for langgraph-js crews" in error["message"], error
    assert "result" not in [m["t"] for m in rt.seen]


@pytest.mark.parametrize(
    "first",
    [
        None,
        protocol.Start(run_id="r", input={}),
        protocol.Prepare(env={}, entrypoint="./c.ts:run", framework="python"),
    ],
    ids=["channel closed", "start before prepare", "not a node framework"],
)
def test_a_runner_that_breaks_the_protocol_gets_an_error_and_exit_code_2(
    node_runtime: Callable[..., Driven], first: protocol.Outgoing | None
) -> None:
    rt = node_runtime({"c.ts": "export const run = () => 1;\n"})
    rt.next()
    if first is not None:
        rt.send(first)
    assert rt.finish() == 2
    error = rt.seen[-1]
    assert error["t"] == "error" and error["error_type"] == "ProtocolError", error


def test_the_document_and_the_node_runtime_speak_the_same_version() -> None:
    doc = document()
    source = (RUNTIME / "protocol.mjs").read_text()
    match = re.search(r"export const VERSION = (\d+);", source)
    assert match is not None and int(match.group(1)) == doc["version"] == protocol.VERSION
    assert f"MAX_LINE_BYTES = {doc['max_line_bytes'] // 1024} * 1024" in source
    framework = doc["runner_to_runtime"]["prepare"]["fields"]["framework"]
    assert "langgraph-js" in framework["enum"]
    runtime = doc["runtime_to_runner"]["hello"]["fields"]["runtime"]
    assert "node" in runtime["enum"]


def test_the_runtime_package_pins_what_it_installs() -> None:
    manifest = json.loads((RUNTIME / "package.json").read_text())
    lock = json.loads((RUNTIME / "package-lock.json").read_text())
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in manifest["dependencies"].values())
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"]


# -- the watchdog: keepalives (version 4) --

STAYS = """
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";

export async function run(input: { sleepMs?: number; busyMs?: number }) {
  const child = spawn("sleep", ["300"], { stdio: "ignore" });
  console.log("child", child.pid);
  await new Promise((resolve) => setTimeout(resolve, input.sleepMs ?? 0));
  await readFile("/proc/self/stat"); // what follows runs after I/O: timers come before input next
  if (input.busyMs) console.log("busy");
  const end = Date.now() + (input.busyMs ?? 0);
  while (Date.now() < end) {} // holds the event loop: no timer runs, no input is read
  child.kill("SIGKILL");
  return { ran: true };
}
"""


def _started(rt: Driven, **inputs: int) -> int:
    """Through start; the pid of the crew's child process."""
    rt.next()
    rt.send(_prepare("./crew.ts:run"))
    rt.send(protocol.Start(run_id="run_node", input=inputs))
    return rt.child_pid()


def test_a_node_runtime_whose_keepalives_stop_ends_its_crew_and_the_crews_processes(
    node_runtime: Callable[..., Driven],
) -> None:
    rt = node_runtime({"crew.ts": STAYS})
    child = _started(rt, sleepMs=60_000)
    rt.send(protocol.Keepalive(within=1.0))  # arms the watchdog; none follows (a stalled runner)
    started = time.monotonic()
    code = rt.proc.wait(20)

    assert code == -signal.SIGKILL, code
    assert 0.8 <= time.monotonic() - started < 10  # the deadline, less the watchdog's margin
    assert "result" not in [m["t"] for m in rt.seen]
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the crew's child process outlived the watchdog"


@pytest.mark.parametrize(
    ("inputs", "within"),
    [({"sleepMs": 2500}, 1.0), ({"sleepMs": 1500}, None)],
    ids=["kept alive", "never kept alive"],
)
def test_a_node_runtime_kept_alive_runs_to_its_end(
    node_runtime: Callable[..., Driven], inputs: dict[str, int], within: float | None
) -> None:
    rt = node_runtime({"crew.ts": STAYS})
    _started(rt, **inputs)
    if within is None:  # an older runner sends none: the watchdog is never armed
        assert rt.until("result")["output"] == {"ran": True}
    else:
        rt.send(protocol.Keepalive(within=within))
        with rt.kept_alive(within=within, every=0.25):
            assert rt.until("result")["output"] == {"ran": True}
    assert rt.finish() == 0


@pytest.mark.parametrize("within", [2**64 / 1e9, 1e300], ids=["2**64 ns", "1e300 s"])
def test_a_node_runtime_kept_alive_for_longer_than_its_clock_holds_runs_to_its_end(
    node_runtime: Callable[..., Driven], within: float
) -> None:
    """A bound past what 64 bits of nanoseconds hold is the furthest one: not one that wrapped
    around to now and ended the crew at once (2**64 ns), nor an error of the runtime's own
    (1e300 s, past what a BigInt is made from)."""
    rt = node_runtime({"crew.ts": STAYS})
    _started(rt, sleepMs=1000)
    rt.send(protocol.Keepalive(within=within))
    assert rt.until("result")["output"] == {"ran": True}
    assert rt.finish() == 0


def test_a_node_crew_that_blocks_its_event_loop_is_ended_at_the_deadline(
    node_runtime: Callable[..., Driven],
) -> None:
    """No timer of the main thread runs while the crew blocks its loop (20 s here): the watchdog's
    own thread ends the runtime at the deadline all the same."""
    busy = 20
    rt = node_runtime({"crew.ts": STAYS})
    rt.next()
    rt.send(_prepare("./crew.ts:run"))
    rt.until("ready")
    rt.send(protocol.Keepalive(within=4.0))  # read while the runtime waits for start: it arms the watchdog
    rt.send(protocol.Start(run_id="run_node", input={"busyMs": busy * 1000}))
    child = rt.child_pid()
    while rt.until("log")["message"] != "busy":
        pass
    started = time.monotonic()  # the crew blocked its loop before this: it lets go no sooner than ``busy`` on
    assert rt.proc.wait(30) == -signal.SIGKILL
    assert time.monotonic() - started < busy, "the crew was ended only when it let its loop go"
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the crew's child process outlived the watchdog"


@pytest.mark.parametrize("linger", [True, False], ids=["asked to linger", "not asked"])
def test_a_node_runtime_asked_to_linger_exits_once_its_input_ends(
    node_runtime: Callable[..., Driven], linger: bool
) -> None:
    rt = node_runtime({"crew.ts": "export const run = async () => 1;\n"})
    rt.next()
    rt.send(msgspec.structs.replace(_prepare("./crew.ts:run"), linger=linger))
    rt.until("ready")
    rt.send(protocol.Start(run_id="run_node", input={}))
    assert rt.until("result")["output"] == 1
    rt.ends_as_asked(linger)
