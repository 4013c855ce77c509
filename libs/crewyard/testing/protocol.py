"""Checking messages against the runner ↔ runtime protocol document (``crewyard_runtime/protocol.json``).

Any runtime (the Python one, a Node shim) and the runner's encoder are tested with
:func:`problems`: every message they produce must be one the document defines, with its required
fields, no unknown ones, and values of the declared types. :class:`Driven` is a runtime in a
process of its own, driven line by line with the runner's own encoder.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from crewyard.runner import protocol
from crewyard.runner.keepalive import BOOT

RUNTIME_TO_RUNNER = "runtime_to_runner"
RUNNER_TO_RUNTIME = "runner_to_runtime"


def document() -> dict[str, Any]:
    text = resources.files("crewyard_runtime").joinpath("protocol.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string_map":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "error_object":
        return (
            isinstance(value, dict)
            and set(value) == {"code", "message"}
            and all(isinstance(v, str) for v in value.values())
        )
    raise ValueError(f"the protocol document uses an unknown type {kind!r}")


def problems(direction: str, message: Any, doc: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with ``message`` sent in ``direction``; empty when it follows the document."""
    doc = doc or document()
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        return [f"not a message object with a string tag: {message!r}"]
    spec = doc[direction].get(message["t"])
    if spec is None:
        return [f"{message['t']!r} is not a {direction} message"]
    fields: dict[str, dict[str, Any]] = spec["fields"]
    found = []
    for name, value in message.items():
        if name == "t":
            continue
        field = fields.get(name)
        if field is None:
            found.append(f"{message['t']}.{name} is not in the protocol")
        elif value is None and not field["required"]:
            continue  # an optional field may be null (omitted)
        elif not _type_ok(field["type"], value):
            found.append(f"{message['t']}.{name} must be {field['type']}, got {value!r:.80}")
        elif "enum" in field and value not in field["enum"]:
            found.append(f"{message['t']}.{name} must be one of {field['enum']}, got {value!r}")
    for name, field in fields.items():
        if field["required"] and name not in message:
            found.append(f"{message['t']}.{name} is required")
    return found


class Driven:
    """A runtime's process driven line by line as a runner drives it: what it was sent and what it
    said, in order (``sent``, ``seen``: both as JSON), and its stderr once it ended."""

    def __init__(self, command: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # as every backend starts it: the runtime leads its group
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.stderr = b""
        self._stderr: list[bytes] = []
        # Both pipes read as they fill: a runtime that writes much to stderr must not stall.
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def _read_stderr(self) -> None:
        assert self.proc.stderr
        self._stderr.append(self.proc.stderr.read())  # until it ends

    def send(self, message: protocol.Outgoing) -> None:
        line = protocol.encode(message)
        self.sent.append(json.loads(line))
        assert self.proc.stdin
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    @contextlib.contextmanager
    def kept_alive(self, within: float, every: float, *, clock: bool = False) -> Iterator[None]:
        """Send ``keepalive {within}`` every ``every`` seconds meanwhile, as a runner does (with
        ``clock``, its deadline on this machine's monotonic clock too, as a runner here does)."""
        stop = threading.Event()

        def loop() -> None:
            with contextlib.suppress(OSError, ValueError):  # the runtime ended: its stdin is gone
                while not stop.wait(every):
                    deadline, boot = (time.monotonic() + within, BOOT) if clock else (None, None)
                    self.send(protocol.Keepalive(within=within, deadline=deadline, boot=boot))

        sender = threading.Thread(target=loop, daemon=True)
        sender.start()
        try:
            yield
        finally:
            stop.set()
            sender.join()

    def next(self) -> dict[str, Any] | None:
        """The runtime's next message; None once its output ended."""
        line = self.lines.get(timeout=self.timeout)
        if not line:
            return None
        message: dict[str, Any] = json.loads(line)  # only protocol lines ever reach stdout
        self.seen.append(message)
        return message

    def until(self, kind: str) -> dict[str, Any]:
        while (message := self.next()) is not None:
            if message["t"] == kind:
                return message
        raise AssertionError(f"the runtime ended without {kind!r}; it said {self.seen}")

    def finish(self) -> int:
        """Close its input (what a runner does when it is done) and wait: its exit code."""
        if self.proc.stdin:
            with contextlib.suppress(BrokenPipeError):  # it ended before reading all it was sent
                self.proc.stdin.close()
        code = self.proc.wait(self.timeout)
        while self.next() is not None:
            pass
        self._readers[1].join(self.timeout)
        self.stderr = b"".join(self._stderr)
        return code

    def child_pid(self) -> int:
        """The pid a crew said it started, in a log line ``child <pid>``."""
        while True:
            line = self.until("log")["message"]
            if line.startswith("child "):
                return int(line.split()[1])

    def ends_as_asked(self, linger: bool) -> None:
        """After its last line: asked to linger (``prepare.linger``), it is still there half a
        second on and exits (0) within 2 s of its input's end; not asked, it exits (0) with its
        input still open."""
        if not linger:
            assert self.proc.wait(self.timeout) == 0
            return
        time.sleep(0.5)
        assert self.proc.poll() is None, "it exited before its input ended"
        ending = time.monotonic()
        assert self.finish() == 0
        assert time.monotonic() - ending < 2.0

    def close(self) -> None:
        """Kill it and what is left of its process group (a crew's child holds its pipes open)
        and close its pipes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
