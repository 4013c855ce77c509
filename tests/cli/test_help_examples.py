"""Every example command line in the CLI's help and in the README parses: its command exists,
each option it uses is one that command takes, each value one it accepts (an example naming an
option its command lacks had shipped). Synopsis lines (``runs list|get …``, ``[--project P]``)
are not commands and are left out."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest

from crewyard.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


def _example_lines(text: str) -> list[str]:
    """Indented lines that run ``crewyard`` (after a pipe, too), continuations joined, comments
    and whatever is piped on cut off."""
    lines, joined = text.splitlines(), []
    i = 0
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if not line.startswith(" "):
            continue
        command = line.strip()
        if "| crewyard " in command:
            command = command.split("| ", 1)[1]
        if command.startswith("crewyard "):
            joined.append(command)
    return joined


def _parse(line: str) -> list[str]:
    """The arguments after ``crewyard``, up to a shell operator (a pipe, a redirect, ``&&``)."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in ("|", ">", "&&", ";"):
            return words[1:i]
    return words[1:]


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_lines() -> list[str]:
    out = []
    for line in README.read_text().splitlines():
        command = line.strip().removeprefix("$ ")
        if command.startswith("crewyard ") and not any(
            "|" in w or w.startswith("[") or w == "…" for w in _parse(command)
        ):
            out.append(command)
    return out


HELP = sorted({line for _, cmd in _commands(cli) for line in _example_lines(cmd.help or "")})
EXAMPLES = sorted({*HELP, *_readme_lines()})


def test_the_help_and_the_readme_have_examples_to_check():
    assert len(HELP) > 40, HELP
    assert len(set(_readme_lines()) - set(HELP)) > 10, _readme_lines()


@pytest.mark.parametrize("line", EXAMPLES)
def test_an_example_parses(line: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    args = _parse(line)
    monkeypatch.chdir(tmp_path)  # the crew folders examples name exist there
    for word in args:
        if word.startswith("./") and not word.endswith((".json", ".ts")):
            (tmp_path / word).mkdir(parents=True, exist_ok=True)
    ctx = cli.make_context("crewyard", list(args), resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group) and ctx.protected_args + ctx.args:
        name, sub, rest = command.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert sub is not None, f"{line}: no command {name!r}"
        command = sub
        try:
            ctx = sub.make_context(name or "", rest, parent=ctx, resilient_parsing=False)
        except click.UsageError as exc:
            pytest.fail(f"{line}: {exc.format_message()}")
