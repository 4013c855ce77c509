"""A run's input is measured as the JSON it is, without encoding more of it than it takes to tell."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from crewyard.gateway import errors
from crewyard.gateway.errors import MAX_INPUT, ApiError, check_input_size


def _json_size(value: Any) -> int:
    return len(msgspec.json.encode(value))


@pytest.mark.parametrize("over", [0, 1])
def test_an_input_of_exactly_the_limit_is_taken_and_one_byte_more_is_not(over: int) -> None:
    shell = {"a": "", "b": [1, 2], "c": {"d": None}}
    shell["a"] = "x" * (MAX_INPUT - _json_size(shell) + over)
    assert _json_size(shell) == MAX_INPUT + over
    if over:
        with pytest.raises(ApiError, match="input is larger than"):
            check_input_size(shell)
    else:
        check_input_size(shell)
    check_input_size({})
    with pytest.raises(ApiError):
        check_input_size(["y" * MAX_INPUT])  # not an object: measured whole


def test_many_copies_of_a_large_value_are_refused_after_the_first_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A trigger template naming the same part of a 2 MB body a hundred times: 200 MB encoded.
    encoded = [0]
    real = errors._size

    class Counting:
        def encode(self, value: Any) -> bytes:
            out = real.encode(value)
            encoded[0] += len(out)
            return out

    monkeypatch.setattr(errors, "_size", Counting())
    part = {"text": "z" * 600_000}
    with pytest.raises(ApiError, match="input is larger than"):
        check_input_size({f"field{i}": part for i in range(100)})
    assert encoded[0] < 2 * MAX_INPUT, encoded[0]
