"""`make soak`: ten minutes of mixed traffic against a real `bantin up` while parts die: the
Celery worker killed (-9) every 30 s, Redis and PostgreSQL each killed once. Then: no article
lost or stored twice, every one published with its renditions, the feed equal to the database,
page views counted exactly (but for what a Redis kill may lose), no 500 and no hang, and every
process's memory sampled every 10 s (the curve is in the results). Results in
bench-results/soak.json; the exit status says whether every check held.

    python -m tests.faults.soak [--minutes 10] [--kill-every 30] [--out bench-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tests.faults import checks
from tests.faults.traffic import CATEGORY, Traffic
from tests.test_e2e import ADMIN, Stack, call, up

ROLES = ("worker", "beat", "ingest", "publisher")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bantin-soak-") as tmp,
        up(Path(tmp), {"BANTIN_LOG_LEVEL": "INFO"}, "--no-demo") as stack,
    ):
        stack.ready()
        status, body = call(
            "POST", stack.api + "/api/v1/categories", {"slug": CATEGORY, "name": "Tin"}
        )
        assert status in (201, 409), body
        result = asyncio.run(soak(stack, args.minutes * 60, args.kill_every))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    summary = {k: v for k, v in result.items() if k not in ("memory_curve", "wrong")}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"results in {out / 'soak.json'}")
    return 0 if result["passed"] else 1


async def soak(stack: Stack, seconds: float, kill_every: float) -> dict[str, Any]:
    views_before = checks.settled_views(stack)
    # About two submissions a second (every third with a photo): what two workers rendering
    # on a shared machine keep up with, so that what the end finds unpublished is lost, not
    # merely queued.
    traffic = Traffic(stack.site, stack.api, ADMIN, interval=1.0)
    running = asyncio.ensure_future(traffic.run())
    started = time.monotonic()
    # Each server once, between two worker kills.
    servers = {
        seconds / 3 + kill_every / 2: "redis-server",
        2 * seconds / 3 + kill_every / 2: "postgres -D",
    }
    worker_at = kill_every
    curve: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    sample_at = 0.0
    redis_window = (0.0, 0.0)
    while (now := time.monotonic() - started) < seconds:
        if now >= sample_at:
            curve.append({"t": round(now), **memory(stack)})
            sample_at += 10
        due = [at for at in servers if at <= now]
        if due:
            needle = servers.pop(due[0])
            traffic.phase = f"{needle.split()[0]} killed"
            at = time.monotonic()
            over = await asyncio.to_thread(checks.kill(stack, needle))
            faults.append({"t": round(now), "killed": needle, "back_after_s": round(over - at, 1)})
            if needle == "redis-server":
                redis_window = (at - checks.AT_RISK_SECONDS, over)
        elif now >= worker_at:
            traffic.phase = "worker killed"
            at = time.monotonic()
            over = await asyncio.to_thread(checks.kill(stack, "bantin.cli worker"))
            faults.append(
                {"t": round(now), "killed": "worker", "back_after_s": round(over - at, 1)}
            )
            worker_at += kill_every
        elif traffic.phase.endswith("killed"):
            traffic.phase = "between faults"
        await asyncio.sleep(0.5)
    traffic.stop.set()
    await running
    curve.append({"t": round(time.monotonic() - started), **memory(stack)})

    failures: list[str] = []
    for name, check in (
        ("healthy", lambda: checks.until(lambda: checks.healthy(stack), "ready", 30)),
        ("published", lambda: checks.wait_published(stack, traffic.accepted)),
        ("once", lambda: checks.assert_once(stack, list(traffic.titles.values()))),
        ("feed", lambda: checks.wait_feed_matches(stack)),
    ):
        try:
            await asyncio.to_thread(check)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    sent = len(traffic.views)
    at_risk = sum(1 for t in traffic.views if redis_window[0] <= t <= redis_window[1])
    lost: int | None = None
    try:
        lost = await asyncio.to_thread(checks.wait_counted, stack, views_before, sent, at_risk, 60)
    except AssertionError as err:
        failures.append(f"views: {err}")
    if traffic.wrong:
        failures.append(f"{len(traffic.wrong)} answers that must never happen")
    growth = memory_growth(curve)
    return {
        "passed": not failures,
        "failures": failures,
        "seconds": round(seconds),
        "answers": dict(traffic.statuses),
        "slowest_answer_s": round(traffic.slowest, 2),
        "slowest_request": traffic.slowest_request,
        "accepted": len(traffic.accepted),
        "views_sent": sent,
        "views_at_risk": at_risk,
        "views_lost": lost,
        "faults": faults,
        "restarts_logged": checks.restarts(stack),
        "memory_growth_percent": growth,
        "memory_curve": curve,
        "wrong": traffic.wrong[:100],
    }


def memory(stack: Stack) -> dict[str, float]:
    """Memory (MB) of each part, a role's child processes included: the proportional set
    size, which shares a page among the processes that map it (PostgreSQL's backends all map
    its shared buffers: their resident sizes would count those once per backend)."""
    found: dict[str, float] = {}
    for child in psutil.Process(stack.proc.pid).children():
        try:
            line = " ".join(child.cmdline())
            name = next((r for r in ROLES if f"bantin.cli {r}" in line), None)
            name = name or ("postgres" if "postgres -D" in line else "redis")
            tree = [child, *child.children(recursive=True)]
            found[name] = round(sum(p.memory_full_info().pss for p in tree) / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return found


def memory_growth(curve: list[dict[str, Any]]) -> dict[str, float]:
    """Per part: the last third's mean over the second third's (the first is warm-up), in %."""
    third = max(1, len(curve) // 3)
    growth = {}
    for name in {k for sample in curve for k in sample if k != "t"}:
        middle = [s[name] for s in curve[third : 2 * third] if name in s]
        last = [s[name] for s in curve[2 * third :] if name in s]
        if middle and last:
            growth[name] = round(100 * (sum(last) / len(last) / (sum(middle) / len(middle)) - 1), 1)
    return growth


if __name__ == "__main__":
    sys.exit(main())
