"""How a stream's frames are cut into writes (``sse.next_write``), for run and project streams."""

from __future__ import annotations

from crewyard.gateway.sse import SLICE_BYTES, next_write


def _frames(*sizes: int, last_at: int | None = None) -> list[tuple[int, str, bytes]]:
    return [
        (i, "run.completed" if i == last_at else "log", bytes([65 + i % 26]) * size)
        for i, size in enumerate(sizes)
    ]


def _is_last(event_type: str) -> bool:
    return event_type == "run.completed"


def _writes(frames: list[tuple[int, str, bytes]]) -> list[tuple[int, int, bool]]:
    """(size, frames, ended) of each write, cut until the end or a terminal event."""
    out, done = [], 0
    while done < len(frames):
        chunk, count, ended = next_write(frames, done, len(frames), _is_last)
        assert chunk == b"".join(f for _, _, f in frames[done : done + count])
        out.append((len(chunk), count, ended))
        if ended:
            break
        done += count
    return out


def test_a_catch_up_is_written_in_pieces_of_at_most_the_slice():
    third = SLICE_BYTES // 3
    assert _writes(_frames(third, third, third, third, third)) == [
        (3 * third, 3, False),
        (2 * third, 2, False),
    ]


def test_a_frame_larger_than_the_slice_is_one_write_of_its_own():
    assert _writes(_frames(10, SLICE_BYTES * 2, 10)) == [
        (10, 1, False),
        (SLICE_BYTES * 2, 1, False),
        (10, 1, False),
    ]


def test_the_terminal_event_ends_the_last_write_and_nothing_after_it_is_sent():
    assert _writes(_frames(10, 10, 10, 10, last_at=1)) == [(20, 2, True)]
    frames = _frames(5, 5, 5)
    assert next_write(frames, 1, 2, _is_last) == (frames[1][2], 1, False)  # only the range asked
