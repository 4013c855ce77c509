"""Keepalives: after each renewal of its lease, the runner tells a run's runtime until when it
still holds the run.

Only the runner fences its attempts (``attempts.fence_when_silent``), and a runner that is
stopped — SIGSTOP, a hung event loop, a machine whose crews run on a remote container engine —
fences nothing: its crews would go on beside the attempt another runner starts once its lease
ran out. So a runtime of protocol version 4 keeps a watchdog. Each keepalive carries the runner's
own fencing deadline (the last renewal sent plus ``lease - interval``) on the runner's
CLOCK_MONOTONIC, with the machine's boot id: a runtime on the same machine (every backend but a
remote engine) takes the deadline as it is, however late it reads the keepalive; one elsewhere
counts ``within`` from when it reads it. Past the deadline the runtime ends the crew — from a
timer that needs neither the crew's interpreter nor its event loop — one interval before
another runner may take the run over (a lease after the owner's last renewal).

The runner cannot always tell a crew its watchdog ended from one that died at the same moment for
reasons of its own. An attempt whose deadline passed before a keepalive renewed it
(:meth:`Keepalives.lapsed`) and whose crew then ended as the watchdog ends it is treated as
fenced: it records no outcome, and the run is retried if the attempt is still the run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .backends import ExitStatus, RunHandle
from .liveness import Liveness
from .protocol import KEEPALIVE_SINCE, Keepalive, encode


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


#: This machine's boot id: a runtime that reads the same one shares our CLOCK_MONOTONIC.
BOOT = _boot_id()
#: How much before a deadline a runtime's watchdog may act (``crewyard_runtime/_watchdog.py``).
EARLY_S = 0.1


def as_watchdog_ends(status: ExitStatus | None) -> bool:
    """Did the crew end as its watchdog ends one: SIGKILL (by a process of its sandbox, or as a
    sandbox's exit code 128 + 9), or exit code 1 from the Python runtime's timer? (None: unknown.)"""
    if status is None:
        return True
    return status.signal == signal.SIGKILL or status.code in (1, 128 + signal.SIGKILL, -signal.SIGKILL)


class Keepalives:
    """The keepalives of one attempt, and whether its runtime may have stopped for want of one."""

    def __init__(self, liveness: Liveness) -> None:
        self.liveness = liveness
        #: The latest deadline a keepalive written to the runtime gave (monotonic seconds): the
        #: runtime's watchdog cannot fire before it.
        self._deadline: float | None = None
        self._lapsed = False
        self.sent = 0

    def lapsed(self) -> bool:
        """Did a deadline we gave pass before a keepalive moved it (its watchdog may have fired)?
        Once true, it stays so: the runtime may be gone whatever is sent afterwards. (The Python
        runtime's thread acts a moment before the deadline: :data:`EARLY_S` of margin.)"""
        if self._deadline is not None and time.monotonic() >= self._deadline - EARLY_S:
            self._lapsed = True
        return self._lapsed

    async def keep(self, handle: RunHandle, spoken: Callable[[], int], introduced: asyncio.Event) -> None:
        """Until cancelled: a keepalive as soon as the runtime said (``spoken``: its protocol
        version) that it takes them — so that a runner stopped right after ``start`` leaves an
        armed watchdog — and after each renewal of the lease from then on. One still being
        written (the runtime does not read its input) is not followed by more."""
        await introduced.wait()  # its hello was read
        if spoken() < KEEPALIVE_SINCE:
            return  # an older runtime: it takes none
        sending: asyncio.Task[None] | None = None
        first = True
        try:
            while True:
                if not first:
                    await self.liveness.renewal()
                first = False
                self.lapsed()  # judged before a new deadline replaces one that passed
                deadline = self.liveness.fence_deadline()
                if deadline is None:
                    continue
                if sending is None or sending.done():
                    sending = asyncio.create_task(self._send(handle, deadline))
        finally:
            if sending is not None:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending

    async def _send(self, handle: RunHandle, deadline: float) -> None:
        within = deadline - time.monotonic()
        if within <= 0:
            return
        await handle.send(encode(Keepalive(within=round(within, 3), deadline=deadline, boot=BOOT)))
        # The runtime's deadline is this one, or later (``within`` counted from when it read it).
        self._deadline = max(self._deadline or 0.0, deadline)
        self.sent += 1
