"""Unit tests of the crew's own tool (excluded from the deployment by crewship.toml)."""

from research_crew.tools import search_notes


def test_search_notes_finds_the_best_matching_note() -> None:
    assert search_notes("tool results function calling").startswith("[note: Tool use]")


def test_search_notes_says_when_nothing_matches() -> None:
    assert search_notes("zebra") == "No notes mention 'zebra'."
