"""Redacting a run's secret values from text that arrives in lines and in pieces: a value whole,
each line of a multi-line value, and the fragment of a value at either side of a cut."""

from __future__ import annotations

from crewyard.lines import MAX_LINE, LineSplitter
from crewyard.secrets import MIN_FRAGMENT, Redactor, redact

SECRET = "sk-live-7Hq2RzP0aWc9Lx4TbN8vKd3Ye5Uf"
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "Ab==\n"
    "-----END PRIVATE KEY-----\n"
)
JSON_CREDENTIALS = '{\n  "type": "service_account",\n  "client_email": "bot@example.iam",\n  "x": 1\n}'


def test_a_value_is_replaced_wherever_it_is_whole_and_short_ones_are_left() -> None:
    redactor = Redactor([SECRET, "abc", "true"])

    assert redactor(f"key={SECRET}; again {SECRET}") == "key=***; again ***"
    assert redactor("abc is true") == "abc is ***"
    assert redact(f"<{SECRET}>", [SECRET]) == "<***>"
    assert not Redactor(["", "abc"]) and Redactor([SECRET])


def test_each_line_of_a_multi_line_value_is_replaced_as_the_crews_output_arrives_line_by_line() -> None:
    redactor = Redactor([PEM, JSON_CREDENTIALS])

    shown = [redactor(line) for line in PEM.splitlines()]
    assert shown == ["***", "***", "***", "Ab==", "***"]  # a line under 8 characters is left
    # JSON credentials as a crew prints them: indented differently, lines of 8+ characters masked
    shown = [redactor(line) for line in (JSON_CREDENTIALS + "\r\n").replace("  ", "    ").splitlines()]
    assert shown == ["{", "    ***", "    ***", '    "x": 1', "}"]
    assert redactor(f"error: {PEM} failed") == "error: *** failed"  # whole where it is whole
    crlf = PEM.replace("\n", "\r\n")
    assert redactor(f"error: {crlf}") == "error: ***\r\n***\r\n***\r\nAb==\r\n***\r\n"


def test_a_fragment_of_a_value_is_masked_at_a_cut_only() -> None:
    redactor = Redactor(["0123", SECRET, PEM])

    for split in range(1, len(SECRET)):
        before, after = f"x{SECRET[:split]}", f"{SECRET[split:]} y"
        masked_before = redactor(before, tail=True)
        masked_after = redactor(after, head=True)
        assert masked_before == ("x***" if split >= MIN_FRAGMENT else before), split
        assert masked_after == ("*** y" if len(SECRET) - split >= MIN_FRAGMENT else after), split
        # the same text where it was not cut is left as it is
        assert redactor(before) == before and redactor(after) == after
    line = PEM.splitlines()[1]
    assert redactor("y" * 100 + line[:30], tail=True) == "y" * 100 + "***"
    assert redactor(line[30:] + " z", head=True) == "*** z"
    assert redactor("sk-live-7Hq2 then sk-live-7", tail=True) == "sk-live-7Hq2 then ***"
    assert redactor("Kd3Ye5Uf then sk-live", head=True) == "*** then sk-live"
    assert redactor("ab", head=True, tail=True) == "ab"


def test_the_longest_fragment_is_masked_when_a_value_repeats_itself() -> None:
    redactor = Redactor(["abababab-x"])

    assert redactor("zzabababab-", tail=True) == "zz***"
    assert redactor("ababab-x zz", head=True) == "*** zz"
    assert redactor("ababab", tail=True) == "***"


def test_a_piece_of_a_longer_stderr_line_is_exactly_the_limit_long() -> None:
    # The runner knows where a secret may straddle a cut by this length (services/runner/output.py).
    cutter = LineSplitter("stderr")
    pieces = cutter.feed(b"x" * (MAX_LINE + 10) + b"\nshort\n") + cutter.feed(b"y" * (2 * MAX_LINE + 1))
    pieces += cutter.finish()

    assert [len(data) for _, data in pieces] == [MAX_LINE, 10, 5, MAX_LINE, MAX_LINE, 1]
