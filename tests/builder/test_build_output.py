"""What one build may write to the stream is bounded: long lines are cut, lines past the cap are
counted and said once, never each stored (a build printing for half an hour fills no disk)."""

from __future__ import annotations

from crewyard.builder.service import MAX_LINE, MAX_LINES, _BuildLog
from crewyard.core.events import BuildLog, Payload


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
