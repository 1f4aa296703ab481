"""Small statistics helpers shared by the benchmarks (no numpy needed)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0 <= p <= 100), linear between closest ranks (numpy's default).

    Raises ValueError on an empty input: a benchmark with no samples has nothing to report.
    """
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    rank = (len(data) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summarize(
    values: Sequence[float], percentiles: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """n, min, mean, median, the given percentiles (as p50, p95, ...) and max; {} when empty."""
    if not values:
        return {}
    out: dict[str, float] = {
        "n": len(values),
        "min": min(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
    }
    for p in percentiles:
        out[f"p{p:g}"] = percentile(values, p)
    out["max"] = max(values)
    return out


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return value / baseline
