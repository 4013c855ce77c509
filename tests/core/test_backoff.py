"""Backoff: pauses that double up to a ceiling, spread by jitter if asked, until a deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from crewyard import backoff
from crewyard.backoff import Backoff


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []

    async def sleep(seconds: float, *_: Any) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(backoff.asyncio, "sleep", sleep)
    return pauses


def test_pauses_double_up_to_their_ceiling(slept: list[float]) -> None:
    b = Backoff(60, first=0.1, most=0.5)

    async def pause(n: int) -> None:
        for _ in range(n):
            await b.pause()

    asyncio.run(pause(5))
    assert slept == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_jitter_spreads_each_pause_around_its_length(slept: list[float]) -> None:
    async def first_pauses() -> None:
        for _ in range(200):
            await Backoff(60, first=1.0, most=1.0, jitter=True).pause()

    asyncio.run(first_pauses())
    assert all(0.5 <= p <= 1.5 for p in slept)
    assert len(set(slept)) > 150  # spread, not one value: instances that lost a race part ways


def test_it_expires_at_its_deadline() -> None:
    b = Backoff(0.05, first=0.01, most=0.01)
    assert not b.expired
    time.sleep(0.06)
    assert b.expired
