"""Unit tests of the crew's notes search (left out of the deployment by crewship.toml's exclude).

They import only plain Python, so they run without CrewAI installed."""

from research_crew.notes import search_notes


def test_search_notes_finds_the_best_matching_note() -> None:
    assert search_notes("tool results function calling").startswith("[note: Tool use]")


def test_search_notes_says_when_nothing_matches() -> None:
    assert search_notes("zebra") == "No notes mention 'zebra'."
