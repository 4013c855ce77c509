"""Which environment variable names a crew may set.

A crew's variables are applied inside its runtime, never to a process on the host — but that
is one line of defence. The second: names that change how programs *load or start* are refused
wherever variables come from (``PUT …/env/{KEY}`` answers 400, ``[deployment.env]`` is a config
error) and, when one is already stored (set before this check existed), the runner leaves it
out of the run with a warning. A crew cannot use these names for anything but changing how some
other program behaves, which is exactly the attack.

The list, with why:

- the dynamic linker and C library: ``LD_*`` (``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``LD_AUDIT`` …),
  and the other names glibc removes from the environment of set-user-id programs because they
  load code or data: ``GCONV_PATH``, ``GETCONF_DIR``, ``GLIBC_TUNABLES``, ``HOSTALIASES``,
  ``LOCALDOMAIN``, ``LOCPATH``, ``MALLOC_*``, ``NIS_PATH``, ``NLSPATH``, ``RESOLV_HOST_CONF``,
  ``RES_OPTIONS``, ``TZDIR`` (glibc's list minus ``TMPDIR``, which the platform sets itself and
  which loads nothing);
- Python: ``PYTHONHOME``, ``PYTHONPATH``, ``PYTHONSTARTUP``, ``PYTHONINSPECT``, ``PYTHONUSERBASE``,
  ``PYTHONEXECUTABLE``, ``PYTHONPLATLIBDIR``, ``PYTHONBREAKPOINT`` (imports any callable);
- Node: ``NODE_OPTIONS`` (``--require`` anything), ``NODE_PATH``;
- shells: ``BASH_ENV`` and ``ENV`` (a file sourced by every non-interactive shell),
  ``BASH_FUNC_*`` (exported functions), ``SHELLOPTS``, ``BASHOPTS``, ``PS4`` (expanded under
  ``xtrace``);
- Perl and Ruby: ``PERL5OPT``, ``PERL5LIB``, ``PERLLIB``, ``RUBYOPT``, ``RUBYLIB``;
- ``CREWYARD_*``: the platform's own names (run id, artifacts folder …).

Names are compared case-insensitively: no legitimate crew setting differs from these only in
case, and some programs read lower-case variants of their variables.
"""

from __future__ import annotations

import re

from .bounds import MAX_ENV_VALUE

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

DENIED_NAMES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
        "PYTHONHOME",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "PYTHONPLATLIBDIR",
        "PYTHONBREAKPOINT",
        "NODE_OPTIONS",
        "NODE_PATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
    }
)
DENIED_PREFIXES = ("LD_", "MALLOC_", "BASH_FUNC_", "CREWYARD_")


def is_denied(name: str) -> bool:
    """True when ``name`` changes how programs load or start (or belongs to the platform)."""
    upper = name.upper()
    return upper in DENIED_NAMES or upper.startswith(DENIED_PREFIXES)


def name_problem(name: str) -> str | None:
    """Why ``name`` may not be a crew's environment variable, or None when it may."""
    if not NAME_RE.fullmatch(name):
        return f"invalid environment variable name {name!r}: use letters, digits and _ (at most 128)"
    if name.upper().startswith("CREWYARD_"):
        return f"{name}: names starting with CREWYARD_ are reserved for the platform"
    if is_denied(name):
        return (
            f"{name} changes how programs load or start and cannot be set for a crew"
            " (see the list in the README's environment section)"
        )
    return None


def value_problem(name: str, value: str) -> str | None:
    """Why no process can be given ``value`` as ``name``'s value, or None: a NUL character ends
    the C string it is passed as (execve refuses it; every run would fail to start)."""
    if "\x00" in value:
        return f"{name}: an environment value cannot contain a NUL character"
    if len(value) > MAX_ENV_VALUE:
        return f"{name}: the value is longer than {MAX_ENV_VALUE} characters"
    return None


def split(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` without what a crew cannot be given (a name it may not set, a value no process can
    take), and those names (sorted)."""
    kept = {k: v for k, v in env.items() if name_problem(k) is None and value_problem(k, v) is None}
    return kept, sorted(k for k in env if k not in kept)
