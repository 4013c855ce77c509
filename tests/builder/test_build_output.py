"""What one build may write to the stream is bounded: long lines are cut, lines past the cap are
counted and said once, never each stored (a build printing for half an hour fills no disk)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from crewyard.builder.service import MAX_LINE, MAX_LINES, MAX_LOG_BYTES, _BuildLog, stopped_message
from crewyard.core.events import BuildLog, Payload
from crewyard.environments import sandbox
from crewyard.lines import MAX_LINE as MAX_TEXT_LINE


async def test_a_builds_output_is_cut_and_capped_and_what_was_left_out_is_counted() -> None:
    kept: list[BuildLog] = []

    async def emit(payload: Payload) -> None:
        assert isinstance(payload, BuildLog)
        kept.append(payload)

    output = _BuildLog(emit)
    await output.line("x" * (MAX_LINE * 4), "stderr")
    for i in range(MAX_LINES + 40):
        await output.line(f"line {i}", "stdout")
    await output.close()

    assert len(kept[0].line) == MAX_LINE + 1 and kept[0].line.endswith("…")
    assert len(kept) == MAX_LINES + 1  # the cap, and one line saying what was left out
    assert kept[-1].line.startswith("… 41 more lines of build output were not kept")


async def test_a_builds_output_is_capped_in_bytes_not_characters() -> None:
    kept: list[BuildLog] = []

    async def emit(payload: Payload) -> None:
        assert isinstance(payload, BuildLog)
        kept.append(payload)

    output = _BuildLog(emit)
    wide = "\U0001f600" * MAX_LINE  # 4 bytes a character: 64 KiB a line
    for _ in range(200):  # 12.5 MiB, in 3.2 million characters
        await output.line(wide, "stdout")
    await output.close()

    stored = sum(len(b.line.encode()) for b in kept[:-1])
    assert stored <= MAX_LOG_BYTES and len(kept) - 1 == MAX_LOG_BYTES // len(wide.encode())
    assert kept[-1].line.startswith("\u2026 72 more lines of build output were not kept")


async def test_a_build_printing_a_line_of_megabytes_gets_it_in_pieces(tmp_path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; sys.stdout.write('x' * 3_000_000); print(); print('error: the end')",
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    await sandbox._watch(proc, None, tmp_path, sandbox.BuildLimits(), log)

    assert lines[-1] == "error: the end"
    assert sum(len(line) for line in lines[:-1]) == 3_000_000 and max(map(len, lines)) <= MAX_TEXT_LINE


def test_a_build_step_that_failed_on_a_file_says_why_but_not_where_on_this_host(tmp_path) -> None:
    with pytest.raises(OSError) as failed:
        (tmp_path / ("n" * 300)).write_text("x")
    message = stopped_message(failed.value)
    assert message == "the build stopped: OSError: File name too long"
    assert str(tmp_path) not in message
    assert stopped_message(ValueError("bad value")) == "the build stopped: ValueError: bad value"
