"""Faults against a real `bantin up` stack, during a stream of submissions (some with photos)
and page views: a worker killed mid-render, the embedded Redis and PostgreSQL killed (-9) and
paused (SIGSTOP) for 15 s.

After each: no request answered 500 or left hanging (503 with Retry-After is allowed while a
dependency is away), the stack healthy again within 30 s without a hand, every article answered
202 published exactly once with every rendition and none stuck, the feed equal to the
database's newest, and every page view counted (a Redis killed -9 may lose what it had not yet
written to its append-only file: at most the views of its last second or so).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import psutil
import psycopg
import pytest

from tests.faults.conftest import database_url, logs, part
from tests.faults.traffic import CATEGORY, Traffic
from tests.test_e2e import ADMIN, Stack

pytestmark = pytest.mark.e2e

PAUSE = 15.0  # seconds a server stays stopped
HEALTHY_WITHIN = 30.0  # seconds after the fault ends
# Redis writes its append-only file once a second (appendfsync everysec), and the publisher
# sends its page views every FLUSH_INTERVAL: what a kill -9 may lose is what was answered in the
# seconds just before it.
AT_RISK_SECONDS = 3.0


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def until(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def healthy(stack: Stack) -> bool:
    return all(get(url + "/readyz")[0] == 200 for url in (stack.site, stack.api))


def total_views(stack: Stack) -> int:
    status, stats = get(stack.site + "/api/v1/stats")
    assert status == 200, stats
    return int(stats["total"])


@pytest.fixture(scope="module")
def stack(live_stack: Stack) -> Stack:
    status, body = _post(live_stack.api + "/api/v1/categories", {"slug": CATEGORY, "name": "Tin"})
    assert status in (201, 409), body
    return live_stack


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def kill(stack: Stack, needle: str) -> Callable[[], float]:
    """Fault: SIGKILL the part; over once the supervisor has started a new one."""

    def inject() -> float:
        victim = part(stack, needle)
        victim.kill()
        victim.wait(10)
        until(lambda: part_pid(stack, needle) not in (None, victim.pid), f"{needle} back", 30)
        return time.monotonic()

    return inject


def part_pid(stack: Stack, needle: str) -> int | None:
    try:
        return part(stack, needle).pid
    except AssertionError:
        return None


def pause(stack: Stack, needle: str) -> Callable[[], float]:
    """Fault: SIGSTOP the server and everything in its process group (PostgreSQL's backends
    too: stopping the postmaster alone would leave open connections served) for PAUSE s."""

    def inject() -> float:
        group = os.getpgid(part(stack, needle).pid)
        os.killpg(group, signal.SIGSTOP)
        try:
            time.sleep(PAUSE)
        finally:
            os.killpg(group, signal.SIGCONT)
        return time.monotonic()

    return inject


def kill_mid_render(stack: Stack, traffic: Traffic) -> Callable[[], float]:
    """Fault: SIGKILL the Celery worker (and with it its pool) while a photo is rendering."""

    def inject() -> float:
        until(lambda: any(traffic.accepted.values()), "an article with a photo", 30)
        worker = part(stack, "bantin.cli worker")
        workload = worker.children(recursive=True)
        until(lambda: any(_busy(p) for p in workload) or not workload, "a worker rendering", 10)
        worker.kill()
        worker.wait(10)
        until(
            lambda: part_pid(stack, "bantin.cli worker") not in (None, worker.pid),
            "the worker back",
            30,
        )
        return time.monotonic()

    return inject


def _busy(process: psutil.Process) -> bool:
    try:
        return process.cpu_percent(0.05) > 0
    except psutil.NoSuchProcess:
        return False


FAULTS = ["worker-killed", "redis-killed", "postgres-killed", "redis-paused", "postgres-paused"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_fault(stack: Stack, fault: str) -> None:
    until(lambda: healthy(stack), "the stack to be healthy before the fault", 60)
    views_before = total_views(stack)
    traffic = Traffic(stack.site, stack.api, ADMIN)
    inject = {
        "worker-killed": kill_mid_render(stack, traffic),
        "redis-killed": kill(stack, "redis-server"),
        "postgres-killed": kill(stack, "postgres -D"),
        "redis-paused": pause(stack, "redis-server"),
        "postgres-paused": pause(stack, "postgres -D"),
    }[fault]
    running = asyncio.ensure_future(traffic.run())
    await asyncio.sleep(3)
    fault_at = time.monotonic()
    fault_over = await asyncio.to_thread(inject)
    await asyncio.sleep(3)  # traffic goes on while the stack recovers
    traffic.stop.set()
    await running
    report = (
        f"{fault}: {dict(traffic.statuses)}, slowest answer {traffic.slowest:.1f} s,"
        f" {len(traffic.accepted)} accepted, {len(traffic.views)} views"
    )
    print(report)
    assert traffic.wrong == [], report + "\n" + "\n".join(traffic.wrong[:20])
    assert traffic.accepted, report

    # Healthy again without a hand.
    await asyncio.to_thread(
        until, lambda: healthy(stack), "both services ready again", HEALTHY_WITHIN
    )
    recovered = time.monotonic() - fault_over

    # Every 202 published, with every rendition; none stuck. (An article whose task was lost
    # with Redis or the worker is sent again by beat's sweep, every 30 s.)
    def published() -> bool:
        return all(_published(stack, i, photos) for i, photos in traffic.accepted.items())

    await asyncio.to_thread(until, published, "every accepted article to be published", 120)

    # Exactly once: one row per accepted article; the feed equals the database's newest.
    with psycopg.connect(database_url(stack)) as conn:
        counts = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT title, count(*) FROM articles WHERE title = ANY(%s) GROUP BY title",
                (list(traffic.titles.values()),),
            ).fetchall()
        )
    assert counts == dict.fromkeys(traffic.titles.values(), 1)

    def feed_matches() -> bool:
        with psycopg.connect(database_url(stack)) as conn:
            newest = [
                r[0]
                for r in conn.execute(
                    "SELECT title FROM articles WHERE status = 'published'"
                    " ORDER BY published_at DESC, id DESC LIMIT 50"
                )
            ]
        status, feed = get(stack.site + "/feeds/all.json")
        titles = [item["title"] for item in feed["items"]] if status == 200 else []
        assert len(titles) == len(set(titles)), f"an article twice in the feed: {titles}"
        seen[:] = [status, titles[:5], newest[:5], len(titles), len(newest)]
        return titles == newest

    seen: list[Any] = []
    try:
        await asyncio.to_thread(until, feed_matches, "the feed to equal the database's newest", 60)
    except AssertionError as err:
        raise AssertionError(f"{err}: feed, database: {seen}") from None

    # Page views: every one counted, once (within the window a Redis kill may lose).
    sent = len(traffic.views)
    at_risk = (
        sum(1 for t in traffic.views if fault_at - AT_RISK_SECONDS <= t <= fault_over)
        if fault == "redis-killed"
        else 0
    )

    def counted() -> int | None:
        got = total_views(stack) - views_before
        return got if sent - at_risk <= got <= sent and (at_risk or got == sent) else None

    try:
        await asyncio.to_thread(until, counted, "every page view to be counted", 30)
    except AssertionError:
        got = total_views(stack) - views_before
        raise AssertionError(f"{got} views counted of {sent} (at risk {at_risk})") from None
    lost = sent - (total_views(stack) - views_before)
    print(f"{fault}: healthy {recovered:.1f} s after the fault, {lost} of {sent} views lost")
    _record(stack, fault, traffic, recovered, lost, sent)


def _published(stack: Stack, article_id: int, photos: int) -> bool:
    status, article = get(f"{stack.api}/api/v1/articles/{article_id}", ADMIN)
    if status != 200:
        return False
    assert article["status"] in ("processing", "published"), article
    if article["status"] != "published":
        return False
    images = article["images"]
    assert len(images) == photos, article
    return all(image["renditions"] and not image.get("error") for image in images)


def _record(
    stack: Stack, fault: str, traffic: Traffic, recovered: float, lost: int, sent: int
) -> None:
    """The figures for the README's table (bench-results/faults.json, when the folder exists)."""
    line = {
        "fault": fault,
        "answers": dict(traffic.statuses),
        "slowest_answer_s": round(traffic.slowest, 2),
        "accepted": len(traffic.accepted),
        "healthy_after_s": round(recovered, 1),
        "views_sent": sent,
        "views_lost": lost,
        "restarts_logged": _restarts(stack),
    }
    out = os.environ.get("BANTIN_FAULTS_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


def _restarts(stack: Stack) -> int:
    return sum(
        line.count("; restarting it")
        for path in logs(stack).glob("*.log")
        for line in path.read_text(errors="replace").splitlines()
    ) + sum(line.count("; restarting it") for line in stack.stderr_lines())
