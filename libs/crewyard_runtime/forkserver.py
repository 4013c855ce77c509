"""A fork server: one process that imported the crew, forking one fresh process per run.

The runner starts the runtime as usual, with ``CREWYARD_FORK_FD`` naming a Unix socket
(``SOCK_SEQPACKET``) it holds the other end of. After ``prepare`` and ``ready`` the runtime never
reads ``start``: it waits on that socket for *fork requests* and never sees a run's input. Each
request is one message, ``{"t": "fork", "artifacts_dir", "tmp_dir", "sandbox"?}``, carrying four
descriptors (``SCM_RIGHTS``): the run's stdin, stdout and stderr, and its *control* socket. For each:

1. the server forks a *keeper*, which closes everything of the server's, asks the kernel to
   kill it when the server dies, enters the run's own namespaces when the request has a
   ``sandbox`` (``_confine``: a server in a bwrap sandbox), and says ``{"t": "forked"}`` on the
   control socket with its credentials (``SCM_CREDENTIALS``: the kernel gives the runner the
   keeper's pid as the runner sees it) — or ``{"t": "failed", "error"}`` — then waits for
   ``{"t": "go"}``: the runner moves it into the run's control groups (and network) first, so
   the run is in them from its first instruction;
2. the keeper forks the *run* (sandboxed: the run's init, pid 1 of its pid namespace, which drops
   every capability and forks the run): a new session, killed with its parent, stdio from the
   request, working directory and ``CREWYARD_ARTIFACTS_DIR`` its own artifacts folder, ``TMPDIR``
   its own; it says ``{"t": "running"}`` with its credentials (its pid as the runner sees it, for
   signals) and closes the control socket, then speaks the protocol from ``hello`` on exactly as
   a freshly started runtime would — ``hello``, ``ready``, then ``start`` and the rest
   (``__main__.serve``);
3. when the run ends the keeper says ``{"t": "exit", "code", "signal"}``, then exits.

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
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from . import _confine, _protocol

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


def _die_with_parent(parent: int | None, alive: int | None = None) -> None:
    """Be killed when the parent dies; exit now if it already has. The parent is checked by its
    pid or, for a pid namespace's first process (whose parent has no pid in it), by ``alive``: the
    read end of a pipe only the parent still holds open."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(1)
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent is gone already: nothing may outlive it
    if alive is not None:
        os.set_blocking(alive, False)
        try:
            gone = os.read(alive, 1) == b""
        except BlockingIOError:
            gone = False
        os.close(alive)
        if gone:
            os._exit(1)


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
            _confine.options(request)
        except ValueError as exc:
            for fd in fds:
                os.close(fd)
            _protocol.send({"t": "log", "level": "warning", "stream": "runtime", "message": f"fork: {exc}"})
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        if os.fork() == 0:
            try:
                server.close()
                _keep(parent, request, fds, run)
            except BaseException:  # said on stderr: the run's own, once the run has it
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
            os._exit(1)
        for fd in fds:
            os.close(fd)


def _keep(server: int, request: dict[str, Any], fds: list[int], run: Callable[[], NoReturn]) -> NoReturn:
    """The keeper: between the runner and one run, for that run's life."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent(server)
    stdin, stdout, stderr, control = fds
    ctl = socket.socket(fileno=control)
    box = _confine.options(request)
    if box is not None:
        try:
            _confine.enter(box)
        except OSError as exc:
            _send(ctl, {"t": "failed", "error": f"the run's sandbox: {exc}"})
            os._exit(1)
    _send(ctl, {"t": "forked"}, credentials=True)
    go = _receive(ctl)
    if go is None or go.get("t") != "go":
        os._exit(1)
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        if box is None:
            _become_run(None, alive_r, request, stdin, stdout, stderr, ctl)
            run()
        _init(alive_r, request, stdin, stdout, stderr, ctl, run)
    os.close(alive_r)
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if box is not None and code > 128:  # the init's report of a run killed by a signal
        code = 128 - code
    _send(ctl, {"t": "exit", "code": code if code >= 0 else None, "signal": -code if code < 0 else None})
    os._exit(0)


def _init(
    alive: int, request: dict[str, Any], stdin: int, stdout: int, stderr: int, ctl: socket.socket,
    run: Callable[[], NoReturn],
) -> NoReturn:  # fmt: skip
    """A sandboxed run's pid 1: the run's own /proc, no capabilities; forks the run, reaps, exits."""
    _die_with_parent(None, alive)
    os.setsid()
    try:
        _confine.become_init()
    except OSError as exc:
        os.write(stderr, f"crewyard: the run's sandbox: {exc}\n".encode())
        os._exit(125)
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _become_run(1, alive_r, request, stdin, stdout, stderr, ctl)
        run()
    os.close(alive_r)
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    ctl.close()
    os._exit(_confine.wait_for(child))


def _become_run(
    parent: int | None, alive: int, request: dict[str, Any], stdin: int, stdout: int, stderr: int,
    ctl: socket.socket,
) -> None:  # fmt: skip
    os.setsid()
    _die_with_parent(parent, alive)
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
    _send(ctl, {"t": "running"}, credentials=True)  # the runner learns this pid from the kernel
    ctl.close()
    _protocol.reopen_channel()
