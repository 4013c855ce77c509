"""Fixtures for running crews through the runtime (see ``crewyard.testing.runtime``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crewyard.testing import FakeLLM, write_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as llm:
        yield llm


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def crew_module(tmp_path: Path) -> Callable[[str, str], Path]:
    """``crew_module(name, source)`` writes a crew module of the test's own; returns its folder."""
    return lambda name, source: write_module(tmp_path / "crew", name, source)
