"""The run's watchdog: the crew ends when its runner stops saying that it still holds the run.

Each ``keepalive`` from the runner (protocol version 4, see ``protocol.json``) says until when
the runtime may go on: ``deadline`` on the runner's CLOCK_MONOTONIC, taken as it is when this
machine has the runner's ``boot`` id (the same clock: a keepalive read late still means what it
said), else ``within`` seconds from now. The first one arms the watchdog — a runtime that never
gets one (an older runner, a warm sandbox still waiting for its run) never times out.

Two timers end the run at the deadline. A thread kills the runtime's process group (the crew's
subprocesses with it) a moment before; and since a thread of this interpreter cannot run while
the crew's C code holds the interpreter, ``faulthandler``'s own timer — a C thread that needs no
interpreter — ends the process at the deadline itself (exit code 1, its report to /dev/null:
the runner reads nothing now, and a full pipe would block). In every sandbox the runtime's end
ends its namespace's other processes too (bwrap's, a forked run's keeper, a container's init).
So a crew that keeps the interpreter past the deadline (say a minute in one regular expression)
is ended with it, whatever its runner says meanwhile: the keepalives it could not read count.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import os
import signal
import threading
import time
from typing import Any

_cond = threading.Condition()
_deadline: float | None = None
_thread: threading.Thread | None = None
_devnull: Any = None
_EARLY_S = 0.02
#: A keepalive read after its deadline (the runtime was importing the crew, or the crew held the
#: interpreter) gives this long for the ones queued behind it to be read: they move it on if the
#: runner is alive; if not, its run ends a moment later than it should have, never sooner.
_DRAIN_S = 0.25
#: No bound is meant further than this (faulthandler's timer cannot take one past ~2**63 us).
_LATEST_S = 1e9


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


BOOT = _boot_id()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def renew(message: dict[str, Any]) -> None:
    """A keepalive. One without a usable ``within`` is ignored (a bad one must not end a run)."""
    global _deadline, _thread, _devnull
    within = _number(message.get("within"))
    if within is None or within <= 0:
        return
    deadline = _number(message.get("deadline"))
    now = time.monotonic()
    if deadline is None or BOOT is None or message.get("boot") != BOOT:
        deadline = now + within  # another machine's clock: counted from now
    with _cond:
        # Deadlines only move on (a late read must not bring one back), and never into the past.
        _deadline = min(max(deadline, now + _DRAIN_S, _deadline or 0.0), now + _LATEST_S)
        if _devnull is None:
            _devnull = open(os.devnull, "w")  # noqa: SIM115  (kept open for faulthandler)
        # Re-armed at every keepalive (it cancels the one before): a few microseconds.
        faulthandler.dump_traceback_later(_deadline - now, exit=True, file=_devnull)
        if _thread is None:
            _thread = threading.Thread(target=_watch, name="crewyard-watchdog", daemon=True)
            _thread.start()
        _cond.notify()


def _watch() -> None:
    with _cond:
        while True:
            assert _deadline is not None
            # A moment before faulthandler's timer: the group goes first when this thread can run.
            left = _deadline - _EARLY_S - time.monotonic()
            if left <= 0:
                break
            _cond.wait(left)
    _end()


def _end() -> None:
    # Our own group, when we lead one (every runtime a backend starts does): a group with our pid
    # as its id can only be ours. Nothing is written: the runner is not reading.
    with contextlib.suppress(OSError):
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)
