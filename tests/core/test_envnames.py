"""The names a crew may not set: one list, used by the API, the crew config and the runner."""

from __future__ import annotations

import pytest

from crewyard.core.envnames import is_denied, name_problem, split, value_problem

REFUSED = [
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "ld_preload",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "HOSTALIASES",
    "MALLOC_CHECK_",
    "MALLOC_ARENA_MAX",
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PYTHONUSERBASE",
    "PYTHONBREAKPOINT",
    "NODE_OPTIONS",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_ls%%",
    "PERL5OPT",
    "CREWYARD_RUN_ID",
]
ALLOWED = ["OPENAI_API_KEY", "LOG_LEVEL", "PYTHONWARNINGS", "TZ", "TMPDIR", "HOME", "LDAP_URL", "ENVIRONMENT"]


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_change_how_programs_load_or_start_are_refused(name: str) -> None:
    assert is_denied(name) or name_problem(name) is not None
    assert name_problem(name) is not None


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["1BAD", "A-B", "A B", "A\n", "", "X" * 129, "É"])
def test_a_name_must_be_letters_digits_and_underscores_whole(name: str) -> None:
    assert "invalid environment variable name" in (name_problem(name) or "")


def test_split_keeps_the_allowed_and_names_the_refused() -> None:
    kept, refused = split({"OPENAI_API_KEY": "k", "LD_PRELOAD": "/x.so", "PYTHONPATH": "/y"})
    assert kept == {"OPENAI_API_KEY": "k"}
    assert refused == ["LD_PRELOAD", "PYTHONPATH"]


def test_a_value_with_a_nul_character_is_never_given_to_a_process() -> None:
    assert value_problem("PEM", "-----BEGIN-----\nabc\n-----END-----\n") is None  # newlines are fine
    assert "NUL" in (value_problem("BAD", "a\x00b") or "")
    kept, refused = split({"GOOD": "x", "BAD": "a\x00b"})
    assert (kept, refused) == ({"GOOD": "x"}, ["BAD"])
