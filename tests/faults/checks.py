"""What the fault tests and the soak do to a live stack and check on it: faults to inject
(kill -9, SIGSTOP), and the state every fault must leave (healthy, every article published
once with its renditions, the feed equal to the database, every page view counted)."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import psutil
import psycopg

from tests.faults.conftest import database_url, part
from tests.faults.traffic import Traffic
from tests.test_e2e import Stack

PAUSE = 15.0  # seconds a server stays stopped
HEALTHY_WITHIN = 30.0  # seconds after the fault ends
# Redis writes its append-only file once a second (appendfsync everysec), and the publisher
# sends its page views every FLUSH_INTERVAL: what a kill -9 may lose is what was answered in the
# seconds just before it.
AT_RISK_SECONDS = 3.0
# An article whose task died with the worker or Redis is sent again by beat's sweep (every 30 s)
# once it has been processing for 2 minutes (workers/publishing.py STUCK_AFTER).
LOST_TASK = 200.0


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


def settled_views(stack: Stack) -> int:
    """The total once the views of earlier tests are all counted (it holds still for 3 s)."""
    seen = [total_views(stack), time.monotonic()]

    def still() -> bool:
        now = total_views(stack)
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= 3

    until(still, "the view counters to settle", 120)
    return int(seen[0])


def total_views(stack: Stack) -> int:
    status, stats = get(stack.site + "/api/v1/stats")
    assert status == 200, stats
    return int(stats["total"])


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
    """Fault: SIGSTOP the server and its children (PostgreSQL's backends too: stopping the
    postmaster alone would leave open connections served) for PAUSE s."""

    def inject() -> float:
        server = part(stack, needle)
        # PostgreSQL's children each have a session of their own: signalled one by one.
        frozen = [server, *server.children()]
        for process in frozen:
            process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(PAUSE)
        finally:
            for process in frozen:
                process.send_signal(signal.SIGCONT)
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


def article_states(stack: Stack, accepted: dict[int, int]) -> dict[int, str]:
    """What each accepted article (id -> photos sent) is, from the database (thousands of
    them would exceed the token's rate limit through the API): "published" only once it is,
    with as many photos as were sent, each rendered and none failed."""
    with psycopg.connect(database_url(stack)) as conn:
        rows = conn.execute(
            "SELECT a.id, a.status, count(i.id) AS photos,"
            " count(i.id) FILTER (WHERE i.error IS NULL AND EXISTS"
            "  (SELECT 1 FROM renditions r WHERE r.image_id = i.id)) AS rendered"
            " FROM articles a LEFT JOIN images i ON i.article_id = a.id"
            " WHERE a.id = ANY(%s) GROUP BY a.id",
            (list(accepted),),
        ).fetchall()
    states = dict.fromkeys(accepted, "missing")
    for article_id, status, photos, rendered in rows:
        if status != "published":
            states[article_id] = status
        elif photos != accepted[article_id]:
            states[article_id] = f"published with {photos} photos of {accepted[article_id]}"
        elif rendered != photos:
            states[article_id] = f"published, {photos - rendered} photos not rendered"
        else:
            states[article_id] = "published"
    return states


def wait_published(stack: Stack, accepted: dict[int, int], timeout: float = LOST_TASK) -> None:
    """Every accepted article (id -> photos sent) published with every rendition. A backlog
    the workers are still working through is waited for as long as it shrinks: `timeout`
    bounds the time without progress."""
    waiting: dict[int, str] = {}
    progress = [len(accepted) + 1, time.monotonic()]

    def done() -> bool:
        states = article_states(stack, accepted)
        waiting.clear()
        waiting.update({i: state for i, state in states.items() if state != "published"})
        assert not any(s in ("failed", "unpublished", "missing") for s in waiting.values()), waiting
        if len(waiting) < progress[0]:
            progress[:] = [len(waiting), time.monotonic()]
        return not waiting or time.monotonic() - progress[1] > timeout

    until(done, "every accepted article published", float("inf"))
    if waiting:
        sample = dict(list(waiting.items())[:20])
        raise AssertionError(
            f"{len(waiting)} accepted articles unpublished after {timeout:.0f} s without"
            f" progress: {sample}"
        )


def assert_once(stack: Stack, titles: list[str]) -> None:
    """One row for each accepted article: nothing stored twice."""
    with psycopg.connect(database_url(stack)) as conn:
        counts = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT title, count(*) FROM articles WHERE title = ANY(%s) GROUP BY title",
                (titles,),
            ).fetchall()
        )
    assert counts == dict.fromkeys(titles, 1)


def wait_feed_matches(stack: Stack, timeout: float = 60) -> None:
    """The site's feed lists the database's newest published articles, each once, in order."""
    seen: list[Any] = []

    def matches() -> bool:
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

    try:
        until(matches, "the feed to equal the database's newest", timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}: feed, database: {seen}") from None


def wait_counted(stack: Stack, before: int, sent: int, at_risk: int, timeout: float = 30) -> int:
    """Every page view answered counted once (`at_risk` of them may be lost); the number lost."""

    def counted() -> bool:
        got = total_views(stack) - before
        return sent - at_risk <= got <= sent and bool(at_risk or got == sent)

    try:
        until(counted, "every page view to be counted", timeout)
    except AssertionError:
        got = total_views(stack) - before
        raise AssertionError(f"{got} views counted of {sent} (at risk {at_risk})") from None
    return sent - (total_views(stack) - before)


def restarts(stack: Stack) -> int:
    """How many restarts the supervisor logged."""
    return sum(line.count("; restarting it") for line in stack.stderr_lines())
