"""A fork server: one process that imported the crew, forking one fresh process per run.

The runner starts the runtime as usual, with ``CREWYARD_FORK_FD`` naming a Unix socket
(``SOCK_SEQPACKET``) it holds the other end of. After ``prepare`` and ``ready`` the runtime never
reads ``start``: it waits on that socket for *fork requests* and never sees a run's input. Each
request is one message, ``{"t": "fork", "artifacts_dir", "tmp_dir"}``, carrying four descriptors
(``SCM_RIGHTS``): the run's stdin, stdout and stderr, and its *control* socket. For each:

1. the server forks a *keeper*, which closes everything of the server's, asks the kernel to
   kill it when the server dies, and says ``{"t": "forked"}`` on the control socket with its
   credentials (``SCM_CREDENTIALS``: the kernel gives the runner the keeper's pid as the runner
   sees it), then waits for ``{"t": "go"}`` — the runner moves it into the run's control
   groups first, so the run is in them from its first instruction;
2. the keeper forks the *run*: a new session, killed with its keeper, stdio from the request,
   working directory and ``CREWYARD_ARTIFACTS_DIR`` its own artifacts folder, ``TMPDIR`` its
   own; it speaks the protocol from ``hello`` on exactly as a freshly started runtime would —
   ``hello``, ``ready``, then ``start`` and the rest (``__main__.serve``);
3. the keeper says ``{"t": "running", "pid"}`` and, when the run ends, ``{"t": "exit", "code",
   "signal"}``, then exits.

Nothing of one run reaches another: each is a fresh process whose memory is a copy of the
server's (which holds only what the import made, under the deployment's current environment),
with its own folders, session and stdio; the server forks only while it has one thread (a fork
copies no other thread, and their locks would stay held in the copy). Python's ``random`` reseeds
itself in every child; other generators seeded at import are the crew's business, as all import
side effects are.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from . import _protocol

ENV_FD = "CREWYARD_FORK_FD"
_PR_SET_PDEATHSIG = 1
_MAX_REQUEST = 64 * 1024


def requested() -> int | None:
    """The fork socket's descriptor, when the runner asked for a fork server."""
    value = os.environ.pop(ENV_FD, "")
    if not value.isdigit():
        return None
    os.set_inheritable(int(value), False)  # never a crew's subprocess's
    return int(value)


def forkable() -> str | None:
    """Why this process must not fork (threads the import left running), or None."""
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"the crew's import left threads running ({', '.join(sorted(others)[:5])})"
    return None


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
        os._exit(1)  # the parent is gone already: nothing may outlive it


def _send(sock: socket.socket, message: dict[str, Any], *, credentials: bool = False) -> None:
    data = json.dumps(message).encode()
    if credentials:
        creds = struct.pack("iII", os.getpid(), os.getuid(), os.getgid())
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    else:
        sock.send(data)


def _receive(sock: socket.socket) -> dict[str, Any] | None:
    data = sock.recv(_MAX_REQUEST)
    if not data:
        return None
    message = json.loads(data)
    return message if isinstance(message, dict) else None


def serve(fork_fd: int, run: Callable[[], NoReturn]) -> int:
    """Fork a run for every request on ``fork_fd`` until the runner closes it; ``run`` is what
    each forked run does (speak the protocol on its stdio, from ``hello``, and exit)."""
    server = socket.socket(fileno=fork_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the kernel
    gc.freeze()  # what the import made is never collected in a child: its pages stay shared
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(server, _MAX_REQUEST, 4)
        except InterruptedError:
            continue
        if not data:  # the runner closed the socket (the pool is retired): after the last run
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.wait()  # SIGCHLD ignored: returns when every keeper has ended
            return 0
        try:
            request = json.loads(data)
            if len(fds) != 4 or not isinstance(request, dict) or request.get("t") != "fork":
                raise ValueError("a fork request is {t: fork, …} with four descriptors")
        except ValueError as exc:
            for fd in fds:
                os.close(fd)
            _protocol.send({"t": "log", "level": "warning", "stream": "runtime", "message": f"fork: {exc}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        if os.fork() == 0:
            with contextlib.suppress(BaseException):
                server.close()
                _keep(parent, request, fds, run)
            os._exit(1)
        for fd in fds:
            os.close(fd)


def _keep(server: int, request: dict[str, Any], fds: list[int], run: Callable[[], NoReturn]) -> NoReturn:
    """The keeper: between the runner and one run, for that run's life."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent(server)
    stdin, stdout, stderr, control = fds
    ctl = socket.socket(fileno=control)
    _send(ctl, {"t": "forked"}, credentials=True)
    go = _receive(ctl)
    if go is None or go.get("t") != "go":
        os._exit(1)
    keeper = os.getpid()
    child = os.fork()
    if child == 0:
        ctl.close()
        _become_run(keeper, request, stdin, stdout, stderr)
        run()
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    _send(ctl, {"t": "running", "pid": child})
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    _send(ctl, {"t": "exit", "code": code if code >= 0 else None, "signal": -code if code < 0 else None})
    os._exit(0)


def _become_run(keeper: int, request: dict[str, Any], stdin: int, stdout: int, stderr: int) -> None:
    os.setsid()
    _die_with_parent(keeper)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    artifacts = str(request.get("artifacts_dir") or "")
    tmp = str(request.get("tmp_dir") or "")
    if artifacts:
        os.chdir(artifacts)
        os.environ["CREWYARD_ARTIFACTS_DIR"] = artifacts
    if tmp:
        os.environ["TMPDIR"] = tmp
        import tempfile

        tempfile.tempdir = None  # computed again from TMPDIR
    _protocol.reopen_channel()
