"""LangGraph's local API server (``langgraph dev``, in-memory runtime) as a peer for figure 10.

The peer is installed for the benchmark only, in a virtualenv of its own (never the platform's
or the tests' environment): by default ``<scratch>/langgraph-peer/.venv``, made on demand with
the machine's ordinary ``pip`` configuration and removed with the scratch folder; ``--peer-env
PATH`` keeps one between runs. ``--quick`` never installs it: without an existing environment
the figure says the peer is not installed and measures crewyard's side alone.

Both sides run the same one-node graph (:data:`GRAPH`): crewyard deploys it as a LangGraph crew,
the peer serves it from a ``langgraph.json``. No model, no network beyond loopback: the server's
analytics, version check, tracing and licence metadata are off (the variables below, read from
``langgraph_cli.analytics``, ``langgraph_api.cli`` and ``langgraph_api.config``/``metadata``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crewyard.testing.platform import free_port

from ._context import BenchError

#: What ``langgraph dev`` needs with the in-memory runtime, pinned so runs stay comparable.
PEER_REQUIREMENTS = [
    "langgraph-cli[inmem]==0.4.40",
    "langgraph-api==0.16.7",
    "langgraph-runtime-inmem==0.36.7",
]
CREW_TOML = '[deployment]\nframework = "langgraph"\nentrypoint = "graph:graph"\n'
GRAPH_ID = "bench"

#: One node that emits ``n`` events and returns how many: through crewyard's runtime when it runs
#: there, else through LangGraph's stream writer (the peer's ``stream_mode="custom"``).
GRAPH = '''"""The peer figure's graph: one node that emits n events and returns how many."""
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

try:
    from crewyard_runtime import emit as crewyard_emit
except ImportError:  # LangGraph's own server
    crewyard_emit = None


class State(TypedDict, total=False):
    n: int
    emitted: int


def work(state: State) -> dict:
    n = int(state.get("n") or 0)
    if crewyard_emit is not None:
        for i in range(n):
            crewyard_emit("tool.result", tool="bench", output=i)
    else:
        from langgraph.config import get_stream_writer

        write = get_stream_writer()
        for i in range(n):
            write({"i": i})
    return {"emitted": n}


builder = StateGraph(State)
builder.add_node("work", work)
builder.add_edge(START, "work")
builder.add_edge("work", END)
graph = builder.compile()
'''

#: The server's calls home, off: CLI analytics, PyPI version check, LangSmith tracing. Without a
#: licence key or control-plane key its metadata loop does not start; they are removed if set.
QUIET = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
UNSET = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
)


class PeerUnavailable(BenchError):
    """The peer cannot be measured here (not installed, install failed, did not start)."""


def write_crew(folder: Path, langgraph_version: str | None) -> Path:
    """The graph as a crewyard LangGraph crew, with the peer's LangGraph version when known."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.py").write_text(GRAPH)
    (folder / "crewyard.toml").write_text(CREW_TOML)
    pin = f"=={langgraph_version}" if langgraph_version else ""
    (folder / "requirements.txt").write_text(f"langgraph{pin}\n")
    return folder


def _tail(path: Path, lines: int = 8) -> str:
    if not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


class Peer:
    """The peer's environment and, once started, its server (``stop`` is safe to call twice)."""

    def __init__(self, home: Path, venv: Path) -> None:
        self.home = home  # graph, config, logs, pip's temporary files
        self.venv = venv
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.langgraph_version: str | None = None
        self.install_seconds: float | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def _probe(self) -> str | None:
        """The environment's LangGraph version if it can run ``langgraph dev`` in memory."""
        if not self.python.exists():
            return None
        probe = (
            "import importlib.metadata as m, langgraph_api, langgraph_runtime_inmem, langgraph_cli;"
            "print(m.version('langgraph'))"
        )
        done = subprocess.run([str(self.python), "-c", probe], capture_output=True, text=True, timeout=120)
        return done.stdout.strip() if done.returncode == 0 else None

    def ensure(self, *, install: bool) -> None:
        """Use the environment if it works, else install it (when allowed), else say why not."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.langgraph_version = self._probe()
        if self.langgraph_version:
            return
        if not install:
            raise PeerUnavailable(
                f"LangGraph's server is not installed at {self.venv} (--quick never installs it; "
                "a full run does, or pass --peer-env with an environment made by one)"
            )
        log = self.home / "install.log"
        tmp = self.home / "pip-tmp"  # pip's unpacked wheels stay in the scratch folder
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        t0 = time.perf_counter()
        with log.open("wb") as out:
            steps = [
                [sys.executable, "-m", "venv", str(self.venv)],
                [str(self.python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
            ]
            for cmd in steps:
                try:
                    done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1200)
                    code = done.returncode
                except subprocess.TimeoutExpired:
                    code = -1
                if code != 0:
                    raise PeerUnavailable(
                        f"LangGraph's server could not be installed ({' '.join(cmd[-3:])} exited {code}): "
                        f"{_tail(log)}"
                    )
        self.install_seconds = time.perf_counter() - t0
        shutil.rmtree(tmp, ignore_errors=True)
        self.langgraph_version = self._probe()
        if not self.langgraph_version:
            raise PeerUnavailable(f"LangGraph's server was installed but does not import: {_tail(log)}")

    def start(self, timeout: float = 120.0) -> None:
        """``langgraph dev`` on a free loopback port, serving :data:`GRAPH` as ``bench``."""
        project = self.home / "graph"
        project.mkdir(parents=True, exist_ok=True)
        (project / "graph.py").write_text(GRAPH)
        (project / "langgraph.json").write_text(
            f'{{"dependencies": ["."], "graphs": {{"{GRAPH_ID}": "./graph.py:graph"}}}}\n'
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in UNSET} | QUIET
        log = (self.home / "server.log").open("ab")
        cmd = [str(self.venv / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload"]
        self.proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port), "--config", "langgraph.json"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped as a whole, never by name
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerUnavailable(f"langgraph dev exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise PeerUnavailable(f"langgraph dev did not answer /ok within {timeout:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return _tail(self.home / "server.log", 5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
