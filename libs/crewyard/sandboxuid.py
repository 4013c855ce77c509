"""The host uid a sandbox's user is, where the host sees it as itself.

A crew runs as uid 1000 inside its sandbox. A fork server's bwrap (unprivileged, in a user
namespace of its own) and a container on a rootful engine (no user namespace) are that user on
the host too, under the uid they are given there. Whoever else is that uid on the host may read
their memory (``/proc/<pid>/mem``: the project's secrets, the run's input), signal them and
write where they write — so it must be a uid no account and no other service uses: on most
machines uid 1000 is the first person's login. ``CREWYARD_SANDBOX_UID`` (60400: above the
accounts login.defs hands out, below the ranges systemd and subordinate ids use) chooses it.
"""

from __future__ import annotations

import functools
import pwd

DEFAULT = 60400


@functools.cache
def problem(uid: int) -> str | None:
    """Why ``uid`` must not be a sandbox's host uid (None: it may). Looked up once a process: the
    backends ask before every run, and an account made later is caught at the next start."""
    if not 0 < uid < 2**31 - 1 or uid in (65534, 65535):
        return f"CREWYARD_SANDBOX_UID={uid} is not a uid a sandbox may have (1 to 2147483646, not nobody's)"
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return None
    return (
        f"CREWYARD_SANDBOX_UID={uid} is the uid of the account {account.pw_name!r} here, who could read"
        " the crews' memory (their secrets): set it to a uid no account or service uses"
    )
