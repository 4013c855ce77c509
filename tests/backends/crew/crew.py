"""Crews the backend tests run: one source folder, one entrypoint per situation (stdlib only).

The same folder becomes a virtual environment's source (process, bwrap) and an image (docker).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crewyard_runtime import artifacts_dir, emit


def hello(inputs: dict[str, Any]) -> dict[str, Any]:
    print("hello from the crew")  # the runtime sends the crew's stdout to stderr
    print("a line on stderr", file=sys.stderr)
    emit("tool.called", tool="greet", input={"who": inputs.get("who")})
    (artifacts_dir() / "report.md").write_text(f"# Hello {inputs.get('who')}\n")
    Path("relative.txt").write_text("the working directory is the artifacts folder\n")
    return {
        "greeting": f"hello {inputs.get('who')}",
        "setting": os.environ.get("CREW_SETTING"),
        "uid": os.getuid(),
        "cwd_is_artifacts": Path.cwd() == artifacts_dir().resolve(),
    }


def echo(inputs: dict[str, Any]) -> dict[str, Any]:
    keys = inputs.get("env_keys", [])
    canonical = json.dumps(inputs, sort_keys=True, ensure_ascii=False).encode()
    # A digest, not the input: protocol lines are cut at 64 KiB, and the input may be larger.
    return {"sha256": hashlib.sha256(canonical).hexdigest(), "env": {k: os.environ.get(k) for k in keys}}


def failing(inputs: dict[str, Any]) -> None:
    print("about to fail")
    raise ValueError("the crew failed on purpose")


def _children(inputs: dict[str, Any]) -> None:
    for _ in range(2):
        subprocess.Popen(["sleep", str(inputs["marker"])])  # a unique argument the test looks for


def sleeper(inputs: dict[str, Any]) -> None:
    """Ignores nothing: SIGTERM ends it (default action); its children must die with it."""
    _children(inputs)
    print("sleeping", flush=True)
    time.sleep(1000)


def graceful(inputs: dict[str, Any]) -> None:
    """Uses the grace period: on SIGTERM it writes an artifact, then exits."""

    def on_term(signum: int, frame: object) -> None:
        (artifacts_dir() / "terminated.txt").write_text("got SIGTERM\n")
        os._exit(0)  # not sys.exit: the runtime would report SystemExit as the crew's error

    signal.signal(signal.SIGTERM, on_term)
    _children(inputs)
    print("waiting for SIGTERM", flush=True)
    time.sleep(1000)


def disk_writer(inputs: dict[str, Any]) -> None:
    """Writes ``mib`` MiB into its artifacts folder, says so, and waits to be killed."""
    for i in range(inputs["mib"]):
        (artifacts_dir() / f"chunk-{i}.bin").write_bytes(os.urandom(1 << 20))
    print("written", flush=True)
    time.sleep(1000)


def unlinked_writer(inputs: dict[str, Any]) -> None:
    """Writes ``mib`` MiB into files of its artifacts folder that it unlinks but keeps open, says
    so, and waits to be killed."""
    held = []
    for i in range(inputs["mib"]):
        path = artifacts_dir() / f"hidden-{i}.bin"
        f = path.open("wb")
        f.write(os.urandom(1 << 20))
        f.flush()
        path.unlink()
        held.append(f)
    print("written", flush=True)
    time.sleep(1000)


def spin(inputs: dict[str, Any]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    print("spinning", flush=True)
    while True:
        pass


def shm_filler(inputs: dict[str, Any]) -> dict[str, Any]:
    """Writes files of 16 MiB (under the file size limit) to /dev/shm until refused (or 512 MiB)."""
    written, failure, names = 0, "", []
    chunk = b"x" * (1 << 20)
    while written < 512 << 20 and not failure:
        names.append(f"/dev/shm/fill{len(names)}")
        with open(names[-1], "wb", buffering=0) as fh:
            for _ in range(16):
                try:
                    written += fh.write(chunk)
                except OSError as exc:
                    failure = errno.errorcode.get(exc.errno or 0, str(exc))
                    break
    for name in names:
        os.unlink(name)
    return {"written": written, "failure": failure}


def descriptor_hoarder(inputs: dict[str, Any]) -> dict[str, Any]:
    """Raises its own limit of open files as far as it may, then opens files until refused."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = ""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard + 1_000_000))
    except (ValueError, OSError) as exc:
        raised = type(exc).__name__
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held, failure = [], ""
    while len(held) < 200_000:
        try:
            held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno or 0, str(exc))
            break
    return {"soft": soft, "hard": hard, "raised": raised, "held": len(held), "failure": failure}


def fork_bomb(inputs: dict[str, Any]) -> dict[str, Any]:
    forks = 0
    failure = ""
    while forks < 5000:
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno or 0, str(exc))
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        forks += 1
    return {"forks": forks, "failure": failure}


def memory_hog(inputs: dict[str, Any]) -> None:
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))  # touched pages: really resident


def write_outside(inputs: dict[str, Any]) -> dict[str, str]:
    here = Path(__file__).resolve().parent
    targets = [
        here / "pwned.txt",
        Path("/usr/pwned.txt"),
        Path("/etc/pwned.txt"),
        Path(sys.prefix) / "pwned.txt",
    ]
    targets += [Path(p) for p in inputs.get("extra", [])]
    results: dict[str, str] = {}
    for target in targets:
        try:
            target.write_text("escaped")
            results[str(target)] = "written"
        except OSError as exc:
            results[str(target)] = errno.errorcode.get(exc.errno or 0, str(exc))
    return results


def links(inputs: dict[str, Any]) -> str:
    out = artifacts_dir()
    (out / "real.txt").write_text("a real file\n")
    os.symlink("/etc/passwd", out / "passwd-link")
    os.symlink("/etc", out / "etc-link")
    (out / "sub").mkdir()
    (out / "sub" / "nested.txt").write_text("nested\n")
    return "linked"


def network(inputs: dict[str, Any]) -> dict[str, Any]:
    interfaces = [ln.split(":")[0].strip() for ln in Path("/proc/net/dev").read_text().splitlines()[2:]]
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()  # TEST-NET-1: never answers
        outcome = "connected"
    except OSError as exc:
        outcome = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return {"interfaces": interfaces, "connect": outcome}


def scratch(inputs: dict[str, Any]) -> dict[str, Any]:
    """What a fresh run finds in its artifacts folder and /tmp, and that they stay its own."""
    out = artifacts_dir()
    before = {"artifacts": sorted(os.listdir(out)), "tmp": sorted(os.listdir("/tmp"))}
    mine = str(inputs["n"])
    (out / f"run-{mine}.txt").write_text(mine)
    Path("/tmp", f"run-{mine}.txt").write_text(mine)
    time.sleep(float(inputs.get("pause", 0.5)))
    after = {"artifacts": sorted(os.listdir(out)), "tmp": sorted(os.listdir("/tmp"))}
    procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return {"before": before, "after": after, "pid": os.getpid(), "procs": procs}


def reach(inputs: dict[str, Any]) -> dict[str, Any]:
    """Which of ``inputs["targets"]`` ([host, port] pairs) a connection reaches, and the routes."""
    interfaces = [ln.split(":")[0].strip() for ln in Path("/proc/net/dev").read_text().splitlines()[2:]]
    routes = [ln.split() for ln in Path("/proc/net/route").read_text().splitlines()[1:]]
    results = {}
    for host, port in inputs["targets"]:
        try:
            socket.create_connection((host, port), timeout=3).close()
            results[f"{host}:{port}"] = "connected"
        except OSError as exc:
            results[f"{host}:{port}"] = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return {
        "interfaces": interfaces,
        "default_route": any(r[1] == "00000000" and r[7] == "00000000" for r in routes if len(r) > 7),
        "nameservers": [
            ln.split()[1]
            for ln in Path("/etc/resolv.conf").read_text().splitlines()
            if ln.startswith("nameserver")
        ],
        "results": results,
    }
