"""The one timing helper of dnnkit's benchmarks (``bench/*.py``) and of ``dnnkit bench``.

Every figure is measured the same way: a warm-up call, then ``rounds`` rounds in which the alternatives
take turns (a burst of load on a shared machine hits all of them alike), each round timing ``number``
repetitions; each alternative's result is the per-repetition time of every round, summarised as best,
median and range. Not a test: timings are never asserted on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Timing", "compare", "measure"]


@dataclass
class Timing:
    """Seconds per repetition, one entry per round; ``result`` is the last return value of the function."""

    times: np.ndarray
    number: int = 1
    result: Any = field(default=None, repr=False)

    @property
    def best(self) -> float:
        return float(np.min(self.times))

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def worst(self) -> float:
        return float(np.max(self.times))

    def fmt(self, scale: float = 1e3, unit: str = "ms", digits: int = 3) -> str:
        """``best 1.234 ms, median 1.300 ms (range 1.234-1.500, 7 rounds)``."""
        b, m, w = self.best * scale, self.median * scale, self.worst * scale
        return (f"best {b:.{digits}f} {unit}, median {m:.{digits}f} {unit} "
                f"(range {b:.{digits}f}-{w:.{digits}f}, {self.times.size} rounds)")


def _run(fn: Callable, n: int, inner: bool):
    t = time.perf_counter()
    if inner:
        out = fn(n)
    else:
        out = None
        for _ in range(n):
            out = fn()
    return time.perf_counter() - t, out


def _calibrate(fn: Callable, min_time: float, inner: bool, start: int) -> int:
    """Repetitions per round so that a round lasts about ``min_time`` seconds."""
    n = max(1, int(start))
    while True:
        dt, _ = _run(fn, n, inner)
        if dt >= min_time or n >= 1_000_000:
            return n
        n = int(n * max(2.0, min_time / max(dt, 1e-9)))


def compare(fns: Sequence[Callable], rounds: int = 7, number: int | None = None, min_time: float = 0.05,
            inner: bool = False, start: int = 1, warmup: bool = True, pause: float = 0.0) -> list[Timing]:
    """Time the alternatives ``fns`` interleaved: in each of ``rounds`` rounds every function runs once, in turn.

    number: repetitions per round (all functions); None calibrates each function so that a round lasts about
    ``min_time`` seconds (from ``start`` repetitions up). inner: ``fn(n)`` performs the n repetitions itself
    (a native loop that runs n steps); otherwise ``fn()`` is one repetition and is called n times here.
    pause: seconds of sleep before each turn (not timed), so that a thread pool the previous alternative left
    spinning (OpenBLAS's pthreads spin ~0.1 s after a threaded call) has gone idle before the next one starts.
    """
    fns = list(fns)
    if warmup:
        for f in fns:
            _run(f, 1, inner)
    counts = [number if number is not None else _calibrate(f, min_time, inner, start) for f in fns]
    times: list[list[float]] = [[] for _ in fns]
    results = [None] * len(fns)
    for _ in range(rounds):
        for i, f in enumerate(fns):
            if pause > 0:
                time.sleep(pause)
            dt, results[i] = _run(f, counts[i], inner)
            times[i].append(dt / counts[i])
    return [Timing(np.asarray(t), n, r) for t, n, r in zip(times, counts, results)]


def measure(fn: Callable, rounds: int = 7, number: int | None = None, min_time: float = 0.05, inner: bool = False,
            start: int = 1, warmup: bool = True) -> Timing:
    """:func:`compare` of one function."""
    return compare([fn], rounds, number, min_time, inner, start, warmup)[0]
