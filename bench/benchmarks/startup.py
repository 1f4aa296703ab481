"""How long `bantin up` takes to print its ready line: first (cold) start, then warm starts."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from bench.registry import Context, Results, benchmark
from bench.stack import new_token, with_stack
from bench.stats import ratio


@benchmark(
    "startup",
    description="launch of `bantin up` -> ready line: cold (initdb) start, then warm starts",
)
def startup(ctx: Context) -> Results:
    starts = ctx.pick(3, 1)
    scratch = Path(tempfile.mkdtemp(prefix="bantin-bench-startup-"))
    home, token = scratch / "home", new_token()
    warm: list[float] = []
    stops: list[float | None] = []
    try:
        with with_stack(home, admin_token=token) as stack:  # initialises the home
            cold = stack.ready_s
        stops.append(stack.stop_s)
        for _ in range(starts):
            with with_stack(home, admin_token=token) as stack:
                warm.append(stack.ready_s)
            stops.append(stack.stop_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = statistics.median(warm)
    return {
        "params": {"warm_starts": starts},
        "cold_s": cold,
        "warm_median_s": median,
        "warm_min_s": min(warm),
        "warm_max_s": max(warm),
        "warm_s": warm,
        # SIGTERM -> exit of each run above (cold first): how long a stop takes, for the record.
        "stop_s": stops,
        "ratios": {"cold_vs_warm": ratio(cold, median)},
    }
