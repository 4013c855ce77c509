"""Figures and the arithmetic behind them: percentiles, side-by-side ratios, targets.

A :class:`Figure` is one line of the results table and one object of the JSON file. It always
carries the raw baseline measured in the same harness run, because on a noisy two-core machine
only the ratio between two numbers taken minutes apart means anything.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Target:
    """A goal for a figure; ``check(value, baseline)`` says whether it is met."""

    text: str
    check: Callable[[float, float | None], bool]


def ratio_at_least(bound: float) -> Target:
    return Target(f"≥ {bound:g}x raw", lambda v, b: b is not None and b > 0 and v / b >= bound)


def ratio_at_most(bound: float, of: str = "raw") -> Target:
    return Target(f"≤ {bound:g}x {of}", lambda v, b: b is not None and b > 0 and v / b <= bound)


def below(bound: float, unit: str) -> Target:
    return Target(f"< {bound:g} {unit}", lambda v, _b: v < bound)


def fanout_target(ratio: float, bound: float, unit: str) -> Target:
    """At most ``ratio`` times the raw baseline, and below ``bound`` whenever the baseline is."""
    return Target(
        f"≤ {ratio:g}x raw (< {bound:g} {unit} when raw is)",
        lambda v, b: b is not None and b > 0 and v / b <= ratio and (v < bound or b >= bound),
    )


def overhead_at_most(bound: float, unit: str) -> Target:
    return Target(f"≤ raw + {bound:g} {unit}", lambda v, b: b is not None and v - b <= bound)


class Figure(msgspec.Struct, kw_only=True):
    """One measured figure: the platform's value next to the raw baseline taken in the same run."""

    key: str  # "1a", "5b-process" …: the figure number first, so tests can find every figure
    title: str
    unit: str
    value: float | None = None
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    samples: int = 0
    min: float | None = None
    median: float | None = None
    max: float | None = None
    target: str = ""
    met: bool | None = None
    detail: str = ""
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None

    @property
    def number(self) -> str:
        return self.key.split("-")[0].rstrip("abcdefgh")


def figure(
    key: str,
    title: str,
    unit: str,
    samples: Sequence[float],
    *,
    value: float | None = None,
    baseline: float | None = None,
    baseline_label: str = "",
    target: Target | None = None,
    detail: str = "",
    extra: dict[str, Any] | None = None,
) -> Figure:
    """A figure from its samples; ``value`` defaults to their median (e.g. pass a p99 instead)."""
    if not samples:
        raise ValueError(f"figure {key} has no samples")
    med = statistics.median(samples)
    val = med if value is None else value
    return Figure(
        key=key,
        title=title,
        unit=unit,
        value=val,
        baseline=baseline,
        baseline_label=baseline_label,
        ratio=val / baseline if baseline else None,
        samples=len(samples),
        min=min(samples),
        median=med,
        max=max(samples),
        target=target.text if target else "",
        met=target.check(val, baseline) if target else None,
        detail=detail,
        extra=extra or {},
    )


def failed(key: str, title: str, unit: str, exc: BaseException) -> Figure:
    return Figure(key=key, title=title, unit=unit, error=f"{type(exc).__name__}: {exc}")


async def side_by_side(
    rounds: int, platform: Callable[[], Awaitable[float]], raw: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """Alternate the two measurements round by round (raw first, then platform first, …), so a
    slow phase of the noisy machine lands on both sides instead of on one."""
    ours: list[float] = []
    base: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            base.append(await raw())
            ours.append(await platform())
        else:
            ours.append(await platform())
            base.append(await raw())
    return ours, base


class Stopwatch:
    """``with Stopwatch() as sw: …`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def ms(seconds: Sequence[float]) -> list[float]:
    return [s * 1000.0 for s in seconds]
