"""Run the crew runtime exactly as a runner does, and read back what it said.

``run_runtime`` starts ``python -m crewyard_runtime`` as a subprocess whose working directory is
the run's artifacts folder, with the fixed environment a runner gives it (``PATH``, ``HOME``,
``PYTHONPATH``, ``CREWYARD_ARTIFACTS_DIR``, ``CREWYARD_RUN_ID``), and speaks the protocol on its
stdin: ``prepare`` with the crew's environment variables (``env``; nothing from the developer's
shell, such as a real ``OPENAI_API_KEY``, leaks in), then ``start`` with the input. With a
:class:`~crewyard.testing.FakeLLM`, ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` point at it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fakellm import FakeLLM

# The folder holding the crewyard and crewyard_runtime packages (the runtime's PYTHONPATH).
LIBS = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300  # a CrewAI import alone takes minutes on a busy 2-core machine


@dataclass
class RuntimeRun:
    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    artifacts: Path
    stray_stdout: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["t"] == "event"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.events if m["type"] == kind]

    @property
    def kinds(self) -> list[str]:
        return [m["type"] for m in self.events]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["t"] == "log"]

    @property
    def result(self) -> Any:
        found = [m for m in self.messages if m["t"] == "result"]
        assert found, f"no result; error: {self.error}\nstderr tail:\n{self.stderr[-3000:]}"
        return found[-1]["output"]

    @property
    def error(self) -> dict[str, Any] | None:
        found = [m for m in self.messages if m["t"] == "error"]
        return found[-1] if found else None


def run_runtime(
    tmp_path: Path,
    entrypoint: str,
    framework: str,
    crew_dir: Path,
    inputs: dict[str, Any] | None = None,
    *,
    llm: FakeLLM | None = None,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> RuntimeRun:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": f"{LIBS}{os.pathsep}{crew_dir}",
        "CREWYARD_ARTIFACTS_DIR": str(artifacts),
        "CREWYARD_RUN_ID": "run_test",
    }
    crew_env = {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true"}
    if llm is not None:
        crew_env |= {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "fake"}
    crew_env |= env or {}
    for key in drop:
        crew_env.pop(key, None)
        process_env.pop(key, None)
    prepare = {"t": "prepare", "env": crew_env, "entrypoint": entrypoint, "framework": framework}
    start = {"t": "start", "run_id": "run_test", "input": inputs or {}}
    proc = subprocess.run(
        [sys.executable, "-m", "crewyard_runtime"],
        cwd=artifacts,
        env=process_env,
        input=json.dumps(prepare) + "\n" + json.dumps(start) + "\n",
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    messages: list[dict[str, Any]] = []
    stray: list[str] = []
    for line in proc.stdout.splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            stray.append(line)
    return RuntimeRun(proc.returncode, messages, proc.stderr, artifacts, stray)


def write_module(folder: Path, name: str, source: str) -> Path:
    """Write ``folder/name.py`` (source dedented) for a crew of a test's own; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


@dataclass
class ThreadRun:
    run: RuntimeRun
    #: What the crew handed back with ``thread.save`` (None: nothing).
    saved: dict[str, Any] | None


def run_runtime_in_thread(
    tmp_path: Path,
    entrypoint: str,
    framework: str,
    crew_dir: Path,
    inputs: dict[str, Any],
    *,
    state: dict[str, Any],
    command: dict[str, Any] | None = None,
    llm: FakeLLM | None = None,
) -> ThreadRun:
    """One thread run of the runtime, answering its requests as a runner would: ``thread.get``
    with ``state`` (``{"values", "checkpoint", "interrupted", …}``), ``thread.save`` kept (the
    state to give the next run), ``blob.append`` pieces joined."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{LIBS}{os.pathsep}{crew_dir}",
        "CREWYARD_ARTIFACTS_DIR": str(artifacts),
    }
    crew_env = {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true"}
    if llm is not None:
        crew_env |= {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "fake"}
    thread = {"id": "thr_test", **({"command": command} if command else {})}
    opening = [
        {"t": "prepare", "env": crew_env, "entrypoint": entrypoint, "framework": framework},
        {"t": "start", "run_id": "run_test", "input": inputs, "thread": thread},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "crewyard_runtime"],
        cwd=artifacts,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for message in opening:
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    messages: list[dict[str, Any]] = []
    blobs: dict[str, list[str]] = {}
    saved = None
    for line in proc.stdout:
        message = json.loads(line)
        messages.append(message)
        if message["t"] != "request":
            continue
        op, args = message["op"], message.get("args") or {}
        if set(args) == {"$blob"}:
            args = json.loads("".join(blobs.pop(args["$blob"])))
        value: Any = None
        if op == "blob.append":
            blobs.setdefault(args["blob"], []).append(args["data"])
        elif op == "thread.get":
            value = {"thread_id": "thr_test", "values": {}, "checkpoint": None, "interrupted": False, **state}
        elif op == "thread.save":
            saved = args
        reply = {"t": "reply", "id": message["id"], "ok": True, "value": value}
        proc.stdin.write(json.dumps(reply) + "\n")
        proc.stdin.flush()
    proc.stdin.close()
    stderr = proc.stderr.read() if proc.stderr else ""
    code = proc.wait(timeout=RUN_TIMEOUT_S)
    return ThreadRun(RuntimeRun(code, messages, stderr, artifacts), saved)
