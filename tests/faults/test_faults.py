"""Faults against a real `bantin up` stack, one after the other, during one stream of
submissions (every third with a photo) and page views: a worker killed mid-render, the embedded
Redis and PostgreSQL killed (-9), then each paused (SIGSTOP) for 15 s.

During every fault, no request answered 500 or left hanging (a 503 with Retry-After is allowed
while a dependency is away); after each, the stack healthy again within 30 s without a hand.
At the end: every article answered 202 published exactly once with every rendition, none stuck,
the feed equal to the database's newest, every page view counted (a Redis killed -9 may lose
what it had not yet written to its append-only file: the views of its last second or so).

BANTIN_FAULTS_REPORT=FILE writes the figures (answers per fault, recovery times, views) to FILE.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

import psutil
import pytest

from tests.faults import checks
from tests.faults.traffic import CATEGORY, Traffic
from tests.test_e2e import ADMIN, Stack, call

pytestmark = pytest.mark.e2e


async def test_faults_under_traffic(live_stack: Stack) -> None:
    stack = live_stack
    status, body = call("POST", stack.api + "/api/v1/categories", {"slug": CATEGORY, "name": "Tin"})
    assert status in (201, 409), body
    views_before = checks.settled_views(stack)
    traffic = Traffic(stack.site, stack.api, ADMIN)
    faults: list[tuple[str, Callable[[], float]]] = [
        ("worker-killed", checks.kill_mid_render(stack, traffic)),
        ("redis-killed", checks.kill(stack, "redis-server")),
        ("postgres-killed", checks.kill(stack, "postgres -D")),
        ("redis-paused", checks.pause(stack, "redis-server")),
        ("postgres-paused", checks.pause(stack, "postgres -D")),
    ]
    running = asyncio.ensure_future(traffic.run())
    recovery: dict[str, float] = {}
    redis_window = (0.0, 0.0)
    try:
        await asyncio.sleep(3)
        for name, inject in faults:
            traffic.phase = name
            began = time.monotonic()
            over = await asyncio.to_thread(inject)
            if name == "redis-killed":
                redis_window = (began - checks.AT_RISK_SECONDS, over)
            traffic.phase = f"after {name}"
            await asyncio.to_thread(
                checks.until, lambda: checks.healthy(stack), f"ready after {name}", 30
            )
            recovery[name] = round(time.monotonic() - over, 1)
            await asyncio.sleep(2)  # traffic goes on, healthy
    finally:
        traffic.stop.set()
        await running
    report = (
        f"answers {dict(traffic.statuses)}, slowest {traffic.slowest:.1f} s"
        f" ({traffic.slowest_request}),"
        f" {len(traffic.accepted)} accepted, {len(traffic.views)} views, healthy again after"
        f" {recovery} s"
    )
    print(report)
    assert traffic.wrong == [], report + "\n" + "\n".join(traffic.wrong[:20])
    assert traffic.accepted and traffic.views, report

    await asyncio.to_thread(checks.wait_published, stack, traffic.accepted)
    checks.assert_once(stack, list(traffic.titles.values()))
    await asyncio.to_thread(checks.wait_feed_matches, stack)
    sent = len(traffic.views)
    at_risk = sum(1 for t in traffic.views if redis_window[0] <= t <= redis_window[1])
    lost = await asyncio.to_thread(checks.wait_counted, stack, views_before, sent, at_risk)
    print(f"{lost} of {sent} views lost ({at_risk} at risk)")
    out = os.environ.get("BANTIN_FAULTS_REPORT")
    if out:
        figures = {
            "answers": dict(traffic.statuses),
            "slowest_answer_s": round(traffic.slowest, 2),
            "slowest_request": traffic.slowest_request,
            "accepted": len(traffic.accepted),
            "healthy_again_after_s": recovery,
            "views_sent": sent,
            "views_at_risk": at_risk,
            "views_lost": lost,
            "restarts_logged": checks.restarts(stack),
        }
        with open(out, "w") as f:
            f.write(json.dumps(figures, indent=2) + "\n")


def test_a_server_that_keeps_dying_stops_the_stack(live_stack: Stack) -> None:
    """The same limit as any role (last: it ends the module's stack): a sixth death within a
    minute stops everything, saying which part failed and where its log is."""
    stack = live_stack
    for _ in range(6):
        if stack.proc.poll() is not None:
            break
        try:
            checks.kill(stack, "redis-server")()
        except (AssertionError, psutil.NoSuchProcess):
            break  # the stack is stopping: no new Redis comes back
    assert stack.proc.wait(60) == 1
    said = "\n".join(stack.stderr_lines())
    redis_log = stack.home / "logs" / "redis.log"
    assert (
        f"redis exited 6 times in a minute (last code -9); stopping everything (see {redis_log})"
        in said
    ), said
