"""The benchmark registry: `@benchmark` adds a function, `discover()` imports them all.

A benchmark is a plain function `fn(ctx: Context) -> dict[str, Any]`, defined in any module of
the `bench.benchmarks` package (every module there is imported by `discover()`):

    from bench.registry import Context, benchmark

    @benchmark("feeds", description="GET /feeds/all.rss under load vs. a bare aiohttp handler")
    def feeds(ctx: Context) -> dict[str, Any]:
        with with_stack() as stack:
            ...
        return {"params": {...}, "rps": ..., "ratios": {"vs_bare": ...}, "samples_ms": [...]}

The returned dict is written, whole, to bench-results/<name>.json. The printed table shows its
scalar values (and those of nested dicts, one level down) and leaves lists (raw samples) to the
JSON file. Conventions that the table understands:
  - "params": what was measured (counts, durations); shown on the table's header line;
  - a key's suffix names its unit: _ms, _s, _rps, _bytes;
  - "ratios": value / baseline, both measured in the same run (shown as "1.23x").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Results = dict[str, Any]
BenchFn = Callable[["Context"], Results]


@dataclass(frozen=True, slots=True)
class Context:
    """What every benchmark receives."""

    quick: bool  # --quick: a smaller run, for a smoke test
    out_dir: Path  # bench-results/ (exists); a benchmark may put extra files here

    def pick(self, full: T, quick: T) -> T:
        """`quick` under --quick, else `full`: `count = ctx.pick(50, 5)`."""
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    fn: BenchFn
    description: str


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str | None = None, *, description: str = "") -> Callable[[BenchFn], BenchFn]:
    """Register the decorated function under `name` (default: the function's name)."""

    def register(fn: BenchFn) -> BenchFn:
        key = name or fn.__name__
        if key in REGISTRY and REGISTRY[key].fn is not fn:
            raise ValueError(f"two benchmarks are named {key!r}")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[key] = Benchmark(key, fn, description or (doc[0] if doc else ""))
        return fn

    return register


def discover() -> dict[str, Benchmark]:
    """Import every module of bench.benchmarks (which registers them) and return the registry."""
    from bench import benchmarks

    for module in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{benchmarks.__name__}.{module.name}")
    return REGISTRY
