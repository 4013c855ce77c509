"""Benchmarks: the platform measured side by side with raw NATS and raw process starts.

Purpose: say how much the platform costs on top of what it is built from. The machines are
small (2 cores) and noisy, so no figure is an absolute number alone: each one is paired with a
raw baseline measured in the same harness run, interleaved with it where possible, and judged by
the ratio (or by an absolute goal that the baseline shows is reachable).

What it owns: its own nats-server and ``crewyard up`` processes in a scratch folder (removed at
the end), a tiny bench crew, and the results (a rich table and a JSON file).

What it must not do: change the platform to suit the measurement, reach beyond loopback, or
assert timing targets in tests (``tests/bench`` checks only that every figure was produced).

Figures (``python -m crewyard.bench --only NAME``): 1 append, 2 live, 3 fanout, 4 replay,
5 runs, 6 api, 7 idle, 8 redeploy, 9 warm, 10 peer — see ``__main__.FIGURES``; design
notes in ``README.md``.
"""

from ._stats import Figure, Target, percentile

__all__ = ["Figure", "Target", "percentile"]
