"""bantin's benchmark harness: `python -m bench [NAME ...] [--list] [--quick]` (`make bench`).

Pieces for writing a benchmark (see bench/registry.py for the conventions):
  - `benchmark`, `Context`: register `fn(ctx) -> dict` in a module of bench/benchmarks/;
  - `with_stack()`: run `bantin up` on free loopback ports, stop it at the end (bench/stack.py);
  - `load()` / `run_load()`: N concurrent clients for T seconds (or M requests) against a URL,
    and `with_bare_server()`, a bare aiohttp handler to use as their baseline (bench/load.py);
  - `percentile()`, `summarize()`, `ratio()` (bench/stats.py).
Traffic goes to 127.0.0.1 only (`require_loopback()` refuses anything else).
"""

from bench.load import LoadResult, load, run_load, with_bare_server
from bench.net import free_port, require_loopback
from bench.registry import Context, benchmark
from bench.stack import Stack, ensure_category, new_token, post_article, with_stack
from bench.stats import percentile, ratio, summarize

__all__ = [
    "Context",
    "LoadResult",
    "Stack",
    "benchmark",
    "ensure_category",
    "free_port",
    "load",
    "new_token",
    "percentile",
    "post_article",
    "ratio",
    "require_loopback",
    "run_load",
    "summarize",
    "with_bare_server",
    "with_stack",
]
