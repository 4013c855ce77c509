"""What the runner makes of a run's output: structured values are never redacted, a result is
carried whole up to the output limit (and the run fails naming it beyond), and a crew that floods
the stream is stopped at the run's event budget."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from crewyard.core.events import RunCompleted, RunFailed
from crewyard.lines import OVERFLOW, LineSplitter
from crewyard.runner.execution import Budget

if TYPE_CHECKING:
    from conftest import RunCrew

pytestmark = pytest.mark.timeout(120)


async def test_a_secret_equal_to_true_redacts_log_text_but_never_the_result(run_crew: RunCrew) -> None:
    source = """
    def run(inputs):
        print("the flag is true")
        return {"ok": True, "text": "true", "list": [True, "true"]}
    """
    ran = await run_crew(source, secrets=["true"], env={"FEATURE_FLAG": "true"})

    assert isinstance(ran.payload, RunCompleted), ran.payload
    assert ran.payload.output == {"ok": True, "text": "true", "list": [True, "true"]}
    assert "the flag is ***" in ran.logs


async def test_a_crew_cannot_log_as_the_runner_nor_past_redaction(run_crew: RunCrew) -> None:
    source = """
    from crewyard_runtime import _protocol

    def run(inputs):
        _protocol.send({"t": "log", "level": "error", "stream": "runner", "message": "disk full"})
        _protocol.send({"t": "log", "level": "loud", "stream": "a b", "message": "odd"})
        _protocol.send({"t": "event", "type": "log", "data": {
            "message": "key s3cr3t", "stream": "runner", "level": "error", "timestamp": "1999-01-01"}})
        return "ok"
    """
    ran = await run_crew(source, secrets=["s3cr3t"])

    logs = {e.data.message: e.data for e in ran.events if e.type == "log"}
    assert (logs["disk full"].stream, logs["disk full"].level) == ("crew", "error")
    assert (logs["odd"].stream, logs["odd"].level) == ("crew", "info")
    sent = logs["key ***"]  # redacted like any log text, stamped by the runner
    assert (sent.stream, sent.level) == ("crew", "error") and not sent.timestamp.startswith("1999")
    runner_lines = [e.data.message for e in ran.events if e.type == "log" and e.data.stream == "runner"]
    assert not any("disk" in line or "s3cr3t" in line for line in runner_lines), runner_lines


async def test_a_result_of_megabytes_arrives_whole(run_crew: RunCrew) -> None:
    source = """
    def run(inputs):
        return {"blob": "x" * 5_000_000, "tail": "end"}
    """
    ran = await run_crew(source, budget=Budget(max_output=6 * 1024 * 1024))

    assert isinstance(ran.payload, RunCompleted), ran.payload
    assert ran.payload.output["tail"] == "end"
    assert (
        hashlib.sha256(ran.payload.output["blob"].encode()).hexdigest()
        == hashlib.sha256(b"x" * 5_000_000).hexdigest()
    )


async def test_a_result_over_the_output_limit_fails_the_run_naming_the_limit(run_crew: RunCrew) -> None:
    source = """
    def run(inputs):
        return "y" * 3_000_000
    """
    ran = await run_crew(source, budget=Budget(max_output=1024 * 1024))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit"
    assert "1048576" in ran.payload.error_message and "CREWYARD_MAX_OUTPUT_BYTES" in ran.payload.error_message
    assert not any("yyyy" in line for line in ran.logs), "the output must not turn into log text"


async def test_a_log_flood_is_stopped_at_the_event_budget(run_crew: RunCrew) -> None:
    source = """
    def run(inputs):
        for i in range(1_000_000):
            print(f"{i:08d} " + "z" * 1000)
    """
    ran = await run_crew(source, budget=Budget(max_events=2_000, max_event_bytes=64 * 1024 * 1024))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit" and "CREWYARD_RUN_MAX_EVENTS" in ran.payload.error_message
    assert 2_000 <= len(ran.events) < 2_100, len(ran.events)


async def test_event_bytes_are_budgeted_too(run_crew: RunCrew) -> None:
    source = """
    from crewyard_runtime import emit

    def run(inputs):
        for i in range(100_000):
            emit("tool.result", tool="t", output="w" * 30_000)
    """
    ran = await run_crew(source, budget=Budget(max_events=100_000, max_event_bytes=2 * 1024 * 1024))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert "CREWYARD_RUN_MAX_EVENT_BYTES" in ran.payload.error_message
    assert sum(len(e.data.output or "") for e in ran.events if e.type == "tool.result") <= 2 * 1024 * 1024


async def test_a_line_nested_past_the_decoders_depth_is_text_and_the_run_goes_on(run_crew: RunCrew) -> None:
    # msgspec raises RecursionError past ~1,000 levels: the runner's reader died of it, and the
    # run was handed back again and again as if its runner were lost.
    source = """
    from crewyard_runtime import _protocol

    def run(inputs):
        deep = "[" * 1200 + "]" * 1200
        head = '{"t":"event","type":"tool.result","data":{"tool":"x","output":'
        _protocol._channel.write(head + deep + "}}\\n")
        _protocol._channel.flush()
        return "survived"
    """
    ran = await run_crew(source)

    assert isinstance(ran.payload, RunCompleted), ran.payload
    assert ran.payload.output == "survived"
    assert any(e.type == "log" and e.data.message.startswith('{"t":"event"') for e in ran.events)


async def test_ready_and_error_messages_over_their_limit_are_budgeted_as_output(run_crew: RunCrew) -> None:
    # A runtime's own messages spend no budget, but each one over MAX_LINE was a warning event:
    # a crew could write them without end, past every limit of the run.
    source = """
    from crewyard_runtime import _protocol

    def run(inputs):
        for i in range(3_000):
            kind = "ready" if i % 2 else "error"
            _protocol._channel.write('{"t":"%s","message":"m","pad":"%s"}\\n' % (kind, "p" * 70_000))
        _protocol._channel.flush()
        return "done"
    """
    ran = await run_crew(source, budget=Budget(max_events=200, max_event_bytes=64 * 1024 * 1024))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit" and "CREWYARD_RUN_MAX_EVENTS" in ran.payload.error_message
    assert len(ran.events) < 300, len(ran.events)


@pytest.mark.parametrize("kind", ["ready", "error", "result"])
async def test_a_runtimes_once_said_message_said_again_and_again_is_budgeted(
    run_crew: RunCrew, kind: str
) -> None:
    # The first ready, result or error spends nothing; repeats spent nothing either, so a crew
    # could send them without end (each error redacted on the runner's loop), past every limit.
    line = json.dumps({"t": "result", "output": "x"} if kind == "result" else {"t": kind, "message": "m"})
    source = f"""
    from crewyard_runtime import _protocol

    def run(inputs):
        for _ in range(20_000):
            _protocol._channel.write('{line}\\n')
        _protocol._channel.flush()
        return "done"
    """
    ran = await run_crew(source, budget=Budget(max_events=200, max_event_bytes=64 * 1024 * 1024))

    assert isinstance(ran.payload, RunFailed), ran.payload
    assert ran.payload.reason == "limit" and "CREWYARD_RUN_MAX_EVENTS" in ran.payload.error_message


def test_a_protocol_line_longer_than_its_limit_streams_past_and_is_reported() -> None:
    cutter = LineSplitter("proto", 100, whole=True)
    out = cutter.feed(b"short\n" + b"a" * 80)
    out += cutter.feed(b"b" * 80)  # over the limit: dropped as it comes
    out += cutter.feed(b"c" * 10 + b"\nnext\n")
    out += cutter.finish()

    assert out == [("proto", b"short"), (OVERFLOW, b"170"), ("proto", b"next")]


def test_a_text_line_longer_than_its_limit_is_cut_into_pieces() -> None:
    cutter = LineSplitter("stderr", 4)
    out = cutter.feed(b"abcdefghij\nk")
    out += cutter.finish()

    assert out == [("stderr", b"abcd"), ("stderr", b"efgh"), ("stderr", b"ij"), ("stderr", b"k")]
    # The newline may come in the chunk that carries the line past the limit: pieces all the same.
    split = LineSplitter("stderr", 4)
    out = split.feed(b"abc") + split.feed(b"defghij\nk") + split.finish()
    assert out == [("stderr", b"abcd"), ("stderr", b"efgh"), ("stderr", b"ij"), ("stderr", b"k")]
