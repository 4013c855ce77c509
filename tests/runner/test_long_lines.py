"""A protocol line longer than a line may be is read no further than its type, unless it is a
result (whose output may be long): a request of megabytes of ``[{},{},...]`` became some 24
times its size in Python objects, only to be dropped. Memory is counted with ``tracemalloc``."""

from __future__ import annotations

import tracemalloc

import msgspec

from crewyard.lines import MAX_LINE
from crewyard.runner.protocol import Oversized, Request, Result, decode_line

MANY = [{}] * 1_000_000  # 3 MB of JSON


def _peak_decoding(line: bytes) -> tuple[object, int]:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        message = decode_line(line, MAX_LINE)
        return message, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_a_long_request_is_read_no_further_than_its_type() -> None:
    line = msgspec.json.encode({"t": "request", "id": "r1", "op": "table.insert", "args": {"rows": MANY}})
    message, peak = _peak_decoding(line)
    assert message == Oversized(t="request")
    assert peak < len(line), peak  # decoded whole: some 24 times the line


def test_a_long_line_cannot_pass_for_a_result_or_hide_objects_in_its_tag() -> None:
    """A tag that is no string, or a tag given twice (the last one ``result``): read no further."""
    for line in (
        msgspec.json.encode({"t": MANY}),
        b'{"t":"request","id":"r1","op":"x","args":{"rows":' + msgspec.json.encode(MANY) + b'},"t":"result"}',
    ):
        message, peak = _peak_decoding(line)
        assert message is None and peak < len(line), peak


def test_a_long_result_is_read_whole_and_a_short_request_as_always() -> None:
    line = msgspec.json.encode({"t": "result", "output": {"items": ["x"] * 100_000}})
    result = decode_line(line, MAX_LINE)
    assert isinstance(result, Result) and len(result.output["items"]) == 100_000
    short = decode_line(b'{"t": "request", "id": "r1", "op": "thread.get"}', MAX_LINE)
    assert short == Request(id="r1", op="thread.get")
    assert decode_line(b'{"t": "nonsense", "x": "' + b"y" * (MAX_LINE + 1) + b'"}', MAX_LINE) is None
