"""A project's secret values never show in a run's log text, however the crew's output is cut on
its way: a multi-line value (a PEM key) printed or written to stderr line by line, a value at the
runtime's 60 KiB cut of a log line, at the 64 KiB split of a stderr line, and in the stderr tail
that becomes a failed run's stack trace. Through the process backend and the real runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from crewyard.core.events import RunCompleted, RunFailed

if TYPE_CHECKING:
    from conftest import Ran, RunCrew

pytestmark = pytest.mark.timeout(120)

#: Shorter fragments of a secret may show at a cut (``crewyard.secrets.MIN_FRAGMENT``).
MIN_FRAGMENT = 4
SECRET = "sk-live-7Hq2RzP0aWc9Lx4TbN8vKd3Ye5Uf"
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)


def _leaks(texts: list[str], secret: str) -> list[str]:
    """Every fragment of ``secret`` (MIN_FRAGMENT+ characters) that shows in ``texts``."""
    found = set()
    for size in range(MIN_FRAGMENT, len(secret) + 1):
        for start in range(len(secret) - size + 1):
            if any(secret[start : start + size] in text for text in texts):
                found.add(secret[start : start + size])
    return sorted(found, key=len)[-3:]


def _texts(ran: Ran) -> list[str]:
    failed = ran.payload if isinstance(ran.payload, RunFailed) else None
    extra = [failed.error_message or "", failed.stack_trace or ""] if failed else []
    return ran.logs + extra


async def test_a_multi_line_secret_is_redacted_line_by_line(run_crew: RunCrew) -> None:
    source = """
    import os, sys

    def run(inputs):
        print(os.environ["KEY"])
        sys.stderr.write("stderr: " + os.environ["KEY"])
        sys.stderr.flush()
        raise ValueError("bad key " + os.environ["KEY"])
    """
    ran = await run_crew(source, secrets=[PEM], env={"KEY": PEM})

    assert isinstance(ran.payload, RunFailed), ran.payload
    for line in PEM.splitlines():
        assert not any(line in text for text in _texts(ran)), (line, ran.logs)
    assert ran.logs.count("***") >= 2 * 4 - 1 and "stderr: ***" in ran.logs, ran.logs


async def test_a_secret_at_the_runtimes_cut_of_a_long_stdout_line_is_masked(run_crew: RunCrew) -> None:
    source = """
    import os, sys

    def run(inputs):
        secret = os.environ["KEY"]
        print("y" * (60 * 1024 - 20) + secret)  # cut by the runtime 20 characters into the secret
        sys.stdout.write("w" * (60 * 1024 - 10))
        sys.stdout.write(secret[:20])  # the line is sent in pieces: 10 characters in, then 15 out
        sys.stdout.write(secret[20:] + " and on\\n")
        return "ok"
    """
    ran = await run_crew(source, secrets=[SECRET], env={"KEY": SECRET})

    assert isinstance(ran.payload, RunCompleted), ran.payload
    assert _leaks(ran.logs, SECRET) == []
    cut = [line for line in ran.logs if line.endswith(" bytes cut]")]
    assert [line[-30:].split(" … ")[0][-4:] for line in cut] == ["y***", "w***"], [c[-40:] for c in cut]
    assert "*** and on" in ran.logs


@pytest.mark.parametrize("before", [65530, 65536 - 20, 65536 - 31])
async def test_a_secret_split_with_a_long_stderr_line_is_masked_on_both_sides(
    run_crew: RunCrew, before: int
) -> None:
    source = f"""
    import os, sys

    def run(inputs):
        sys.stderr.write("x" * {before} + os.environ["KEY"] + " after\\n")
        sys.stderr.flush()
        os._exit(3)  # no result: the stderr tail becomes the failed run's stack trace
    """
    ran = await run_crew(source, secrets=[SECRET], env={"KEY": SECRET})

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert _leaks(_texts(ran), SECRET) == []
    assert "*** after" in ran.logs
    assert "*** after" in (ran.payload.stack_trace or ""), (ran.payload.stack_trace or "")[-200:]
