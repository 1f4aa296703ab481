"""One load generator for a whole run: `wrk` where it is installed, else bench/load.py's.

    targets = [Target("bantin", url, headers=...), Target("bare", bare_url, headers=...)]
    runs = alternate(targets, rounds=3, connections=50, duration=5)   # A B A B A B
    summary(runs["bantin"])["rps"], ratio(...)

A service and its baseline are always measured with the same generator and settings, one after
the other, alternating, so that the drift of a shared, noisy machine falls on both alike. Only
ratios within one run mean anything; the absolute figures are shown beside them.

wrk is driven by a Lua script written to a temporary file: it sets the method, headers and body,
makes a unique body per request when asked (`Target.body_parts`), and prints its summary as one
JSON line. wrk stops by time only (its count is bounded by the duration); bench/load.py stops by
time or count, whichever comes first. wrk counts answers by class only (a status >= 400 is an
error), so each target is checked first with one request whose status must be in `ok_statuses`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import LoadResult, run_load
from bench.net import require_loopback
from bench.stats import summarize
from bench.support import reader_cookie

WRK_THREADS = 1  # the server under test is one process on a two-core machine: leave it a core
MAX_READERS = 100_000  # reader_cookie() spells 5 digits of the reader's number
WRK_MARK = "BENCH_WRK_JSON "


class LoadError(RuntimeError):
    """The load generator failed, or a target answered its first request wrongly."""


@dataclass(frozen=True)
class Target:
    """What one side of a comparison receives: the same request shape for every side."""

    name: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # A unique body per request: prefix + "<thread>.<n>" + suffix (a fresh title, say).
    body_parts: tuple[bytes, bytes] | None = None
    ok_statuses: tuple[int, ...] = (200,)
    # > 0: the requests come from this many returning readers in turn, each with its cookie
    # (bench.support.reader_cookie(n), the n-th request's reader being n % readers) instead
    # of one reader's Cookie header.
    readers: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.readers <= MAX_READERS:
            raise ValueError(f"readers: 0 to {MAX_READERS:,}")

    def make_body(self, n: int, thread: int = 0) -> bytes | None:
        if self.body_parts is None:
            return self.body
        prefix, suffix = self.body_parts
        return prefix + f"{thread}.{n}".encode() + suffix

    def make_headers(self, n: int) -> dict[str, str] | None:
        """The n-th request's own headers (added to `headers`), or None."""
        if not self.readers:
            return None
        return {"Cookie": _reader_cookies(self.readers)[n % self.readers]}


@functools.lru_cache(maxsize=4)
def _reader_cookies(readers: int) -> tuple[str, ...]:
    """Made once (measure() asks first): not the load generator's work per request."""
    return tuple(reader_cookie(n) for n in range(readers))


def generator() -> str:
    """'wrk' when `wrk` is on the PATH, else 'python' (bench/load.py). BENCH_LOADGEN=python
    forces the fallback (to compare generators, or to check it still works)."""
    forced = os.environ.get("BENCH_LOADGEN", "").strip().lower()
    if forced == "python":
        return "python"
    return "wrk" if shutil.which("wrk") else "python"


def generator_info() -> dict[str, Any]:
    """For a result's params: which generator, its version and settings."""
    name = generator()
    info: dict[str, Any] = {"generator": name}
    if name == "wrk":
        info["wrk_threads"] = WRK_THREADS
        wrk = shutil.which("wrk") or "wrk"
        try:
            done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
            line = (done.stdout or done.stderr).strip().splitlines()
            info["generator_version"] = line[0].split(" Copyright")[0] if line else "?"
        except (OSError, subprocess.SubprocessError):
            info["generator_version"] = "?"
    else:
        info["generator_version"] = "bench/load.py (aiohttp client)"
    return info


# --- one measurement -----------------------------------------------------------------------------


def measure(
    target: Target,
    *,
    connections: int,
    duration: float,
    max_requests: int = 1_000_000,
    request_timeout: float = 10.0,
) -> LoadResult:
    """`connections` closed-loop clients for `duration` s against `target` (bench/load.py also
    stops after `max_requests`)."""
    require_loopback(target.url)
    if generator() == "wrk":
        return _wrk(target, connections, duration, request_timeout)
    make_body = None
    if target.body_parts is not None:
        make_body = target.make_body
    make_headers = None
    if target.readers:
        _reader_cookies(target.readers)  # made before the clock starts
        make_headers = target.make_headers
    return run_load(
        target.url,
        concurrency=connections,
        duration=duration,
        max_requests=max_requests,
        method=target.method,
        headers={k: v for k, v in target.headers.items() if not (target.readers and k == "Cookie")},
        body=target.body,
        make_body=make_body,
        make_headers=make_headers,
        ok_statuses=target.ok_statuses,
        request_timeout=request_timeout,
    )


def _lua_string(data: bytes) -> str:
    """A Lua long bracket string holding `data` unchanged (UTF-8 passes through)."""
    text = data.decode("utf-8")
    level = 1  # never "[[": `t[[[x]]]` does not parse
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A long string drops a newline that directly follows its opening bracket.
    return f"[{eq}[\n{text}]{eq}]"


def wrk_script(target: Target) -> str:
    lines = [f"wrk.method = {_lua_string(target.method.encode())}"]
    for name, value in target.headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name.encode())} ] = {_lua_string(value.encode())}")
    if target.body is not None:
        lines.append(f"wrk.body = {_lua_string(target.body)}")
    lines.append("tid = 0\nlocal threads = 0\n")
    lines.append(
        "function setup(thread)\n  threads = threads + 1\n  thread:set('tid', threads)\nend"
    )
    if target.body_parts is not None:
        prefix, suffix = target.body_parts
        lines.append(f"local prefix = {_lua_string(prefix)}")
        lines.append(f"local suffix = {_lua_string(suffix)}")
        lines.append(
            "local counter = 0\n"
            "function request()\n"
            "  counter = counter + 1\n"
            "  return wrk.format(nil, nil, nil, prefix .. tid .. '.' .. counter .. suffix)\n"
            "end"
        )
    elif target.readers:
        # reader_cookie(n) in Lua: the same cookie for the same reader
        sample = reader_cookie(0)
        day = sample.split(".")[1]
        if sample != f"bantin_vid=benchreader00000.{day}.{0:016x}":
            raise LoadError(f"reader_cookie() changed its format ({sample}): update wrk_script")
        lines.append(
            f"local readers = {target.readers}\n"
            "local counter = 0\n"
            "function request()\n"
            "  local reader = (counter + (tid - 1) * 50021) % readers\n"
            "  counter = counter + 1\n"
            "  wrk.headers['Cookie'] = string.format("
            f"'bantin_vid=benchreader%05d.{day}.%016x', reader, reader)\n"
            "  return wrk.format()\n"
            "end"
        )
    lines.append(
        "function done(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        f"  io.write('{WRK_MARK}' .. string.format("
        '\'{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d,'
        ' "read": %d, "write": %d, "status": %d, "timeout": %d, "min_us": %d,'
        ' "mean_us": %f, "max_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\',\n'
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,"
        " e.status, e.timeout, latency.min, latency.mean, latency.max,"
        " latency:percentile(50), latency:percentile(90), latency:percentile(99)) .. '\\n')\n"
        "end"
    )
    return "\n".join(lines) + "\n"


def _wrk(target: Target, connections: int, duration: float, request_timeout: float) -> LoadResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.TemporaryDirectory(prefix="bantin-bench-wrk-") as scratch:
        script = Path(scratch) / "load.lua"
        script.write_text(wrk_script(target), encoding="utf-8")
        argv = [
            wrk,
            "-t",
            str(min(WRK_THREADS, connections)),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{max(1, round(request_timeout))}s",
            "-s",
            str(script),
            require_loopback(target.url),
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=duration + request_timeout + 30
            )
        except subprocess.TimeoutExpired as err:
            raise LoadError(f"wrk did not finish: {err}") from err
    found = [line for line in done.stdout.splitlines() if line.startswith(WRK_MARK)]
    if done.returncode != 0 or not found:
        raise LoadError(
            f"wrk exited with code {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )
    raw = json.loads(found[-1][len(WRK_MARK) :])
    elapsed = max(raw["duration_us"] / 1e6, 1e-9)
    requests = int(raw["requests"])
    ok = requests - int(raw["status"])
    statuses: dict[str, int] = {}
    if ok:
        statuses["<400"] = ok
    if raw["status"]:
        statuses[">=400"] = int(raw["status"])
    for kind in ("connect", "read", "write", "timeout"):
        if raw[kind]:
            statuses[f"socket_{kind}"] = int(raw[kind])
    latency: dict[str, float] = {}
    if requests:
        latency = {
            "n": requests,
            "min": raw["min_us"] / 1000,
            "mean": raw["mean_us"] / 1000,
            "median": raw["p50_us"] / 1000,
            "p50": raw["p50_us"] / 1000,
            "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "max": raw["max_us"] / 1000,
        }
    errors = int(raw["status"]) + sum(int(raw[k]) for k in ("connect", "read", "write", "timeout"))
    return LoadResult(
        url=target.url,
        method=target.method,
        concurrency=connections,
        requests=requests,
        ok=ok,
        errors=errors,
        elapsed_s=elapsed,
        rps=ok / elapsed,
        latency_ms=latency,
        statuses=statuses,
        bytes_read=int(raw["bytes"]),
        stopped_by="time",
    )


# --- comparisons ---------------------------------------------------------------------------------


@dataclass
class Probe:
    status: int
    headers: dict[str, str]
    body: bytes


async def fetch(target: Target, limit_s: float = 30.0) -> Probe:
    """One request as the load generator sends it (the same headers and body)."""
    require_loopback(target.url)
    headers = dict(target.headers)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as session,
        session.request(
            target.method,
            target.url,
            headers=headers,
            data=target.make_body(0, 999),
            allow_redirects=False,
            auto_decompress=False,
        ) as response,
    ):
        body = await response.read()
        return Probe(response.status, dict(response.headers), body)


def check(target: Target) -> Probe:
    """Send one request; raise LoadError unless its status is one of `ok_statuses`."""
    probe = asyncio.run(fetch(target))
    if probe.status not in target.ok_statuses:
        raise LoadError(
            f"{target.name}: {target.method} {target.url} answered {probe.status}"
            f" (expected {target.ok_statuses}): {probe.body[:300]!r}"
        )
    return probe


def alternate(
    targets: Sequence[Target],
    *,
    rounds: int,
    connections: int,
    duration: float,
    max_requests: int = 1_000_000,
    warmup: float = 1.0,
    between: Callable[[Target], Any] | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[LoadResult]]:
    """Measure every target `rounds` times, round-robin (A B A B ...), after a short warm-up
    of each; `between(target)` runs after each measurement (to let background work settle)."""
    for target in targets:
        check(target)
    if warmup > 0:
        for target in targets:
            measure(target, connections=connections, duration=warmup, max_requests=max_requests)
            if between is not None:
                between(target)
    runs: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    for n in range(rounds):
        for target in targets:
            t0 = time.monotonic()
            result = measure(
                target, connections=connections, duration=duration, max_requests=max_requests
            )
            runs[target.name].append(result)
            if log is not None:
                p99 = result.latency_ms.get("p99")
                log(
                    f"  round {n + 1}/{rounds} {target.name:<14} {result.rps:>9,.0f} req/s"
                    f"  p99 {p99 if p99 is not None else float('nan'):7.2f} ms"
                    f"  errors {result.errors}  ({time.monotonic() - t0:.1f} s)"
                )
            if between is not None:
                between(target)
    return runs


def summary(results: Sequence[LoadResult]) -> dict[str, Any]:
    """The median of the rounds (rps, p50, p99), each round's rps, and the totals."""
    rps = [r.rps for r in results]
    p50 = [r.latency_ms["p50"] for r in results if "p50" in r.latency_ms]
    p99 = [r.latency_ms["p99"] for r in results if "p99" in r.latency_ms]
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
    requests = sum(r.requests for r in results)
    return {
        "median_rps": statistics.median(rps) if rps else None,
        "p50_ms": statistics.median(p50) if p50 else None,
        "p99_ms": statistics.median(p99) if p99 else None,
        "rounds_rps": rps,
        "requests": requests,
        "errors": sum(r.errors for r in results),
        "bytes_per_answer": (sum(r.bytes_read for r in results) / requests) if requests else None,
        "statuses": dict(statuses),
    }


def spread(results: Sequence[LoadResult]) -> dict[str, float]:
    """min/median/max of the rounds' rps: how noisy the rounds were."""
    s = summarize([r.rps for r in results], ())
    return {k: s[k] for k in ("min", "median", "max") if k in s}


def ratio_of_medians(
    runs: Mapping[str, Sequence[LoadResult]], name: str, baseline: str
) -> float | None:
    a = [r.rps for r in runs[name]]
    b = [r.rps for r in runs[baseline]]
    if not a or not b or not statistics.median(b):
        return None
    return statistics.median(a) / statistics.median(b)


def paired_median(
    runs: Mapping[str, Sequence[LoadResult]], name: str, baseline: str
) -> float | None:
    """The median of the round-by-round ratios: steadier than a ratio of medians when the
    machine's load drifts between rounds (each pair was measured seconds apart)."""
    values = [r for r in paired_ratios(runs, name, baseline) if r is not None]
    return statistics.median(values) if values else None


def paired_ratios(
    runs: Mapping[str, Sequence[LoadResult]], name: str, baseline: str
) -> list[float | None]:
    """Round by round: name's rps / baseline's rps in the same round."""
    return [
        (a.rps / b.rps) if b.rps else None for a, b in zip(runs[name], runs[baseline], strict=False)
    ]
