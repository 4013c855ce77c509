"""The arithmetic behind the figures: percentiles, ratios and targets."""

from __future__ import annotations

import pytest

from crewyard.bench import percentile
from crewyard.bench._stats import below, figure, overhead_at_most, ratio_at_least


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_figure_takes_the_median_and_judges_the_target_against_the_baseline() -> None:
    f = figure("1b", "pipelined", "events/s", [90.0, 70.0, 80.0], baseline=100.0, target=ratio_at_least(0.8))
    assert (f.value, f.min, f.median, f.max, f.samples) == (80.0, 70.0, 80.0, 90.0, 3)
    assert f.ratio == pytest.approx(0.8) and f.met is True
    assert figure("1b", "t", "u", [79.0], baseline=100.0, target=ratio_at_least(0.8)).met is False


def test_latency_and_overhead_targets() -> None:
    lat = [1.0, 2.0, 200.0]
    assert figure("3", "t", "ms", lat, value=percentile(lat, 99), target=below(100, "ms")).met is False
    start = figure("5b-process", "t", "ms", [60.0], baseline=20.0, target=overhead_at_most(50, "ms"))
    assert start.met is True and start.number == "5"
    assert figure("5b-x", "t", "ms", [80.0], baseline=20.0, target=overhead_at_most(50, "ms")).met is False
