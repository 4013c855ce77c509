"""Byte ranges as RFC 9110 reads them: one range served, the rest ignored, past the end a 416."""

from __future__ import annotations

import pytest

from crewyard.gateway.ranges import Unsatisfiable, byte_range, etag_matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 1)),
        ("bytes=10-19", (10, 20)),
        ("bytes=10-", (10, 100)),
        ("bytes=90-500", (90, 100)),  # past the end: cut to the end
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=5-1", None),  # invalid: the whole file
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=x-y", None),
        # Numbers of any length (int() refuses over 4,300 digits): past every file is past this one.
        ("bytes=0-" + "9" * 5000, (0, 100)),
        ("bytes=-" + "9" * 5000, (0, 100)),
        ("bytes=" + "0" * 5000 + "7-9", (7, 10)),
    ],
)
def test_one_range_is_served_and_anything_else_is_the_whole_file(header, expected):
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-200", "bytes=-0", "bytes=" + "1" * 5000 + "-"])
def test_a_range_past_the_end_is_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        byte_range(header, 100)


def test_an_empty_file_is_sent_whole_for_its_last_bytes():
    # "bytes 0--1/0" is what a 206 would have to say: there is no such Content-Range.
    assert byte_range("bytes=-5", 0) is None
    with pytest.raises(Unsatisfiable):
        byte_range("bytes=0-", 0)


def test_etags_match_weakly_and_by_star():
    assert (
        etag_matches('"abc"', '"abc"') and etag_matches('W/"abc", "x"', '"abc"') and etag_matches("*", '"a"')
    )
    assert not etag_matches('"abd"', '"abc"') and not etag_matches(None, '"abc"')
