"""`python -m bench [NAME ...] [--list] [--quick] [--out DIR]` (what `make bench` runs)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.registry import Context, discover
from bench.report import machine, table, write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench-results"


def main(argv: Sequence[str] | None = None) -> int:
    registry = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run bantin's benchmarks; results go to a table and to OUT/<name>.json.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)

    if args.list:
        width = max((len(n) for n in registry), default=0)
        for bench in registry.values():
            print(f"{bench.name:<{width}}  {bench.description}")  # noqa: T201
        return 0
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; --list shows {', '.join(registry)}")
    selected = [registry[n] for n in dict.fromkeys(args.names)] or list(registry.values())

    out: Path = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, out_dir=out)
    host = machine()
    summary: list[tuple[str, str, float, Path]] = []
    failed = False
    for bench in selected:
        print(f"\n=== {bench.name}{' (quick)' if ctx.quick else ''} ...", flush=True)  # noqa: T201
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        document: dict[str, Any] = {
            "benchmark": bench.name,
            "description": bench.description,
            "quick": ctx.quick,
            "started_at": started_at.isoformat(timespec="seconds"),
            "machine": host,
            # Other work on the machine skews every figure: the load when this one started.
            "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }
        try:
            results = bench.fn(ctx)
            document.update(status="ok", results=results)
        except KeyboardInterrupt:
            print(f"\nbench: interrupted during {bench.name}", file=sys.stderr)  # noqa: T201
            return 130
        except Exception as err:
            failed = True
            traceback.print_exc()
            document.update(status="error", error=f"{type(err).__name__}: {err}", results={})
        duration = time.monotonic() - t0
        document.update(
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"), duration_s=duration
        )
        path = out / f"{bench.name}.json"
        write_json(path, document)
        summary.append((bench.name, document["status"], duration, path))
        if document["status"] == "ok":
            extra = f"nproc={host['nproc']}, python {host['python']}"
            print(table(bench.name, bench.description, document["results"], extra))  # noqa: T201
        else:
            first = document["error"].splitlines()[0]
            print(f"{bench.name}: FAILED: {first} (details above and in the JSON file)")  # noqa: T201

    print("\n=== summary")  # noqa: T201
    for name, status, duration, path in summary:
        print(f"  {name:<24} {status:<6} {duration:7.1f} s   {_shown(path)}")  # noqa: T201
    return 1 if failed else 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
