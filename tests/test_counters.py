"""Visit counters against real Redis, PostgreSQL, the publisher app and a real Celery worker:
every HTML page view counted exactly once, through crashes, shutdowns and an emptied Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from shared import keys
from shared.counting import record, stream
from shared.counting.count import drain, zone_offsets
from shared.counting.record import COOKIE, find_cookie, hits_key
from shared.counting.stream import Batch
from shared.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("worker")

DRAIN = "bantin.drain_hits"
PERSIST = "bantin.persist_counters"


@pytest.fixture
def r(clean: Settings) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(clean.require_backends()[1])
    yield client
    client.close()


def cookie(day: str | None = None) -> str:
    """A `bantin_vid` as the site gives it, days ago (or on `day`, YYYYMMDD, for tests that
    set the recorder's clock): from now on the browser is known by it."""
    day = day or (datetime.now(UTC) - timedelta(days=3)).strftime("%Y%m%d")
    return f"{secrets.token_urlsafe(12)}.{day}.{secrets.token_hex(8)}"


async def view(site: Any, path: str, *, vid: str | None = None, agent: str | None = None) -> Any:
    site.session.cookie_jar.clear()
    headers = {}
    if vid is not None:
        headers["Cookie"] = f"{COOKIE}={vid}"
    if agent is not None:
        headers["User-Agent"] = agent
    response = await site.get(path, headers=headers)
    await response.read()
    return response


async def flushed(site: Any) -> None:
    await site.server.app[hits_key].flush()


async def quiet(site: Any) -> None:
    """Only the test sends the recorder's views (the flusher's next wait is an hour)."""
    site.server.app[hits_key].interval = 3600.0
    await asyncio.sleep(0.3)  # the flusher's current short wait ends


def send(task: str, **kwargs: Any) -> None:
    from workers.app import app

    app.send_task(task, kwargs=kwargs)


async def drained(r: redis_lib.Redis) -> None:
    """Have the worker drain until the stream is empty: the script deletes each entry it counts,
    so an empty stream means every view is counted (or acknowledged)."""
    for _ in range(20):
        send(DRAIN)
        for _ in range(20):
            await asyncio.sleep(0.05)
            if r.xlen(keys.HITS_STREAM) == 0:
                return
    raise AssertionError(f"the stream still holds {r.xlen(keys.HITS_STREAM)} entries")


async def stats(site: Any) -> dict[str, int]:
    response = await site.get("/api/v1/stats")
    assert response.status == 200
    body: dict[str, int] = await response.json()
    return body


def news_category(conn: psycopg.Connection[Any]) -> int:
    """The id of the category 'tin-tuc', written straight to the database (made if missing)."""
    category = conn.execute(
        "INSERT INTO categories (slug, name) VALUES ('tin-tuc', 'Tin tức')"
        " ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id"
    ).fetchone()
    assert category is not None
    return int(category[0])


def article(settings: Settings) -> tuple[int, str]:
    """A published article, written straight to the database (the pipeline has its own tests)."""
    with psycopg.connect(settings.require_backends()[0], autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO articles (uuid, slug, category_id, title, status, published_at)"
            " VALUES (%s, 'bai-viet', %s, 'Bài viết', 'published', now()) RETURNING id",
            (uuid.uuid4(), news_category(conn)),
        ).fetchone()
        assert row is not None
    return row[0], f"/tin-tuc/bai-viet-{row[0]}"


def pg_counter(settings: Settings, key: str) -> int | None:
    with psycopg.connect(settings.require_backends()[0]) as conn:
        row = conn.execute("SELECT value FROM counters WHERE key = %s", (key,)).fetchone()
    return None if row is None else int(row[0])


def pg_article_views(settings: Settings, article_id: int) -> int | None:
    with psycopg.connect(settings.require_backends()[0]) as conn:
        row = conn.execute(
            "SELECT views FROM article_views WHERE article_id = %s", (article_id,)
        ).fetchone()
    return None if row is None else int(row[0])


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def python_child(
    code: str, settings: Settings
) -> AsyncIterator[tuple[subprocess.Popen[bytes], bytes]]:
    """`code` run by a child Python (its argv[1]: the suite's Redis URL) with the suite's
    settings, and the first line it prints; killed on the way out if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, settings.require_backends()[1]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, **settings.to_env()},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        yield proc, line.strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def lag(r: redis_lib.Redis) -> int:
    """The views in the stream not counted yet, as the metrics read them."""
    return int(r.get(keys.HITS_WAITING) or 0)


def wipe_counters(r: redis_lib.Redis) -> None:
    """What an emptied Redis looks like to the counters (the stream is the publishers' side)."""
    stale = [*r.scan_iter(match="bantin:stats:*"), *r.scan_iter(match="bantin:views:*")]
    if stale:
        r.delete(*stale)


# --- counting ------------------------------------------------------------------------------------


async def test_views_from_visitors_counted_exactly(
    site: Any, r: redis_lib.Redis, clean: Settings
) -> None:
    article_id, path = article(clean)
    visitors = [cookie() for _ in range(4)]
    views = 0
    for i, vid in enumerate(visitors):
        for page in ("/", "/tin-tuc/", path)[: 1 + i % 3]:
            response = await view(site, page, vid=vid)
            assert response.status == 200
            assert COOKIE not in response.cookies  # the browser already has one
            views += 1
        response = await view(site, path, vid=vid)
        assert response.status == 200
        views += 1
    await flushed(site)
    assert lag(r) == views
    await drained(r)

    body = await stats(site)
    assert body == {
        "online": len(visitors),
        "total": views,
        "today_views": views,
        "today_visitors": len(visitors),
    }
    article_views = int(r.get(keys.article_views(article_id)) or 0)
    assert article_views == sum(1 + (1 if i % 3 == 2 else 0) for i in range(len(visitors)))
    assert r.get(keys.BOTS) is None
    assert r.xpending(keys.HITS_STREAM, keys.HITS_GROUP)["pending"] == 0


async def test_new_reader_gets_a_cookie_and_stays_one_visitor(
    site: Any, r: redis_lib.Redis
) -> None:
    site.session.cookie_jar.clear()
    first = await site.get("/")
    assert first.status == 200
    header = first.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Max-Age=31536000", "Path=/"):
        assert attribute.lower() in header.lower(), header
    # The browser sends it back from now on: no new cookie, and still the same visitor.
    for _ in range(3):
        again = await site.get("/")
        assert again.status == 200
        assert "Set-Cookie" not in again.headers
    await flushed(site)
    await drained(r)
    assert await stats(site) == {"online": 1, "total": 4, "today_views": 4, "today_visitors": 1}


async def test_what_does_not_count(site: Any, r: redis_lib.Redis) -> None:
    bots = (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "facebookexternalhit/1.1",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "",
    )
    for agent in bots:
        response = await view(site, "/", agent=agent)
        assert response.status == 200
        assert COOKIE not in response.cookies
    for path in (
        "/healthz",
        "/readyz",
        "/api/v1/stats",
        "/feeds/all.rss",
        "/feeds/all.json",
        "/media/no/such.jpg",
        "/static/no-such.css",
        "/khong-co-muc-nay/",  # 404 page
        "/tin-tuc/bai-viet-999999",  # 404 page of an article
    ):
        response = await view(site, path, vid=cookie())
        # A feed is answered (from PostgreSQL before its first rebuild) but never counted.
        assert response.status != 200 or path.startswith(
            ("/healthz", "/readyz", "/api/", "/feeds/")
        )
    head = await site.head("/", headers={"Cookie": f"{COOKIE}={cookie()}"})
    assert head.status == 200
    reader = await view(site, "/", vid=cookie())  # the one view that counts
    assert reader.status == 200
    await site.get("/", headers={"Sec-Purpose": "prefetch", "Cookie": f"{COOKIE}={cookie()}"})
    await flushed(site)
    await drained(r)

    body = await stats(site)
    assert (body["total"], body["online"], body["today_views"]) == (1, 1, 1)
    assert int(r.get(keys.BOTS) or 0) == len(bots)


async def test_old_malformed_and_repeated_entries(
    site: Any, r: redis_lib.Redis, clean: Settings
) -> None:
    """A view older than five minutes counts but is not online; a malformed line, or an entry
    that is not a batch, is acknowledged, never counted; a batch sent again with the same token
    is not appended twice."""
    now = int(time.time())
    r.xadd(keys.HITS_STREAM, {"n": 1, "b": f"{now - 600} 0  c-old /"})
    r.xadd(keys.HITS_STREAM, {"p": "/", "t": "yesterday"})
    r.xadd(keys.HITS_STREAM, {"h": f"{now} 0 12 c-one /"})  # one view an entry: no format of ours
    # A batch of malformed lines (an empty one among them) and a bot's view: the bot is
    # counted apart, the rest acknowledged; the first bot of a second is cached as a bot.
    lines = [f"{now} 0 12 ", "yesterday 0 12 c-bad /", f"{10**20} 0 12 c-far /", ""]
    lines += [f"{-(10**20)} 0  c-far /", f"{now} 1 12 c-bot /"]
    r.xadd(keys.HITS_STREAM, {"n": 7, "b": "\n".join([*lines, f"{now} 1 12 c-bot /x"])})
    # Identical views as one line: with no number, a number of 0 or of ten digits, or a number
    # and nothing else, the line is malformed; a bot's three views count three.
    lines = [f"* {now} 0 12 c-none /", f"*0 {now} 0 12 c-zero /", f"*{10**9} {now} 0 12 c-huge /"]
    lines += ["*7", "*", f"*x{now} 0 12 c-x /"]
    r.xadd(keys.HITS_STREAM, {"n": 3, "b": "\n".join([*lines, f"*3 {now} 1 12 c-bot /"])})
    recorder = site.server.app[hits_key]
    lines = [f"{now} 0  c-new /", f"*3 {now} 0  c-three /"]
    for _ in range(2):  # an answer lost after Redis applied the batch: the retry is a no-op
        recorder._batches.append(Batch("same-token", 4, list(lines)))
        recorder._held += 2
        await recorder.flush()
    assert r.xlen(keys.HITS_STREAM) == 6
    await drained(r)
    body = await stats(site)
    assert int(r.get(keys.BOTS) or 0) == 2 + 3
    old_is_today = (
        datetime.fromtimestamp(now - 600, clean.zone).date() == datetime.now(clean.zone).date()
    )
    assert (body["total"], body["online"]) == (1 + 1 + 3, 2)
    assert (body["today_views"], body["today_visitors"]) == (4 + old_is_today, 2 + old_is_today)
    assert r.xpending(keys.HITS_STREAM, keys.HITS_GROUP)["pending"] == 0


async def test_recorder_batches_in_the_stream(
    site: Any, r: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is one stream entry of newline-separated views, identical views of one second
    being one line with their number before it: a path holding a newline is
    sent percent-encoded and still counts once. The views waiting are counted beside the
    stream (its lag), and bound it: beyond STREAM_MAXLEN views the oldest batches go."""
    recorder = site.server.app[hits_key]
    now = int(time.time())
    recorder.add(f"{now} 0  c-newline /a\nb")
    for _ in range(3):
        recorder.add(f"{now} 0 7 c-plain /tin-tuc/")
    assert recorder.waiting == 4
    assert await recorder.flush() == 4
    [(_, fields)] = r.xrange(keys.HITS_STREAM)
    assert fields == {
        b"n": b"4",
        b"b": f"{now} 0  c-newline /a%0Ab\n*3 {now} 0 7 c-plain /tin-tuc/".encode(),
    }
    assert lag(r) == 4
    await drained(r)
    body = await stats(site)
    assert (body["total"], body["online"], body["today_visitors"]) == (4, 2, 2)
    assert r.get(keys.article_views(7)) == b"3"
    assert lag(r) == 0

    monkeypatch.setattr(stream, "STREAM_MAXLEN", 700)
    recorder.flush_at = 500
    for i in range(1000):
        recorder.add(f"{now} 0  c{i} /")
    assert await recorder.flush() == 1000  # two batches of flush_at (500): the first goes
    assert r.xlen(keys.HITS_STREAM) == 1
    assert lag(r) == 500
    await drained(r)
    assert (await stats(site))["total"] == 4 + 500
    assert lag(r) == 0

    monkeypatch.setattr(stream, "STREAM_MAXLEN", 10)
    for i in range(30):  # batches of one view: the newest ten stay
        recorder.add(f"{now} 0  c{i} /")
        await recorder.flush()
    assert r.xlen(keys.HITS_STREAM) == 10
    assert lag(r) == 10
    for i in range(30):  # a batch above the bound: it stays whole, alone
        recorder.add(f"{now} 0  c{i} /")
    await recorder.flush()
    assert r.xlen(keys.HITS_STREAM) == 1
    assert lag(r) == 30


async def test_the_waiting_count_is_kept_true(
    site: Any, r: redis_lib.Redis, clean: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count of views waiting (the lag, and the stream's bound): the oldest batches make
    room for a new one; a count edited by hand into text costs only the bound; a count that
    drifted is mended once the stream is empty."""
    recorder = site.server.app[hits_key]
    now = int(time.time())
    monkeypatch.setattr(stream, "STREAM_MAXLEN", 4)
    for batch in range(2):
        for i in range(3):
            recorder.add(f"{now} 0  c{batch}-{i} /")
        await recorder.flush()
    # The second batch went over the bound: the first one made room.
    assert r.xlen(keys.HITS_STREAM) == 1
    assert lag(r) == 3

    r.set(keys.HITS_WAITING, "not a number")
    recorder.add(f"{now} 0  c-text /")
    assert await recorder.flush() == 1
    assert r.xlen(keys.HITS_STREAM) == 2  # appended all the same
    await drained(r)
    assert (await stats(site))["total"] == 4
    assert r.get(keys.HITS_WAITING) == b"0"  # mended: the stream is empty

    r.set(keys.HITS_WAITING, 1000)  # drifted (say, the stream deleted by hand)
    recorder.add(f"{now} 0  c-last /")
    await recorder.flush()
    await drained(r)
    assert lag(r) == 0 and (await stats(site))["total"] == 5


async def test_visitors_remembered_by_cookie_header_only_for_short_headers(site: Any) -> None:
    """A browser sends the same Cookie header page after page, so its visitor is remembered
    for the day; a long header is not (what it would hold in memory is the client's say)."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    recorder = site.server.app[hits_key]
    vid = cookie()
    short = f"{COOKIE}={vid}"
    long = f"{short}; other={'x' * 600}"
    for header in (short, long):
        request = make_mocked_request(
            "GET", "/", headers={"Cookie": header, "User-Agent": "Firefox"}
        )
        recorder.page_view(request, web.Response())
    assert short in recorder._readers and long not in recorder._readers
    assert sum(recorder.lines.values()) == 2
    assert len({line.split(" ")[3] for line in recorder.lines}) == 1  # one visitor


async def test_views_counted_by_second_each_different_view_one_line(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder counts views per second of the clock: identical views of one second are
    one line with their number, a new second starts new lines, a clock stepped back counts in
    the second it shows, and the different views of every second held wake the flusher."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    recorder = site.server.app[hits_key]
    await quiet(site)
    await recorder.flush()
    recorder.flush_at = 4
    vid = cookie("20200101")  # a day before the clock's, whatever today is
    clock = [1_800_000_000.2]
    monkeypatch.setattr(record, "_now", lambda: clock[0])

    def view_at(moment: float, path: str, article: int | None = None) -> None:
        clock[0] = moment
        request = make_mocked_request(
            "GET", path, headers={"Cookie": f"{COOKIE}={vid}", "User-Agent": "Firefox"}
        )
        recorder.page_view(request, web.Response(), article)

    view_at(1_800_000_000.2, "/a-1", 1)
    view_at(1_800_000_000.9, "/a-1", 1)
    view_at(1_800_000_000.95, "/")
    view_at(1_800_000_001.0, "/a-1", 1)
    assert not recorder._wake.is_set()  # three different views so far
    view_at(1_799_999_999.5, "/a-1", 1)  # the clock stepped back
    assert recorder._wake.is_set()
    visitor = "c" + vid.split(".")[0]
    assert [(n, line) for line, n in recorder.lines.items()] == [
        (2, f"1800000000 0 1 {visitor} /a-1"),
        (1, f"1800000000 0  {visitor} /"),
        (1, f"1800000001 0 1 {visitor} /a-1"),
        (1, f"1799999999 0 1 {visitor} /a-1"),
    ]
    assert recorder.waiting == 5


async def test_a_readers_last_line_is_reused_only_for_the_same_view(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each remembered reader keeps the line of its last view: the same page, article and
    second count under that very string, and any of the three changing (or another reader)
    writes a line of its own. Readers who are not remembered (no cookie) keep nothing."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    recorder = site.server.app[hits_key]
    await quiet(site)
    await recorder.flush()
    first, second = cookie("20200101"), cookie("20200101")
    clock = [1_800_000_000.1]
    monkeypatch.setattr(record, "_now", lambda: clock[0])
    cached_path = "/a-1"  # the front door hands the recorder the same path object each time

    def view(vid: str | None, path: str | None, article: int | None, at: float) -> None:
        clock[0] = at
        headers = {"User-Agent": "Firefox"}
        if vid is not None:
            headers["Cookie"] = f"{COOKIE}={vid}"
        request = make_mocked_request("GET", path or "/a-1", headers=headers)
        recorder.page_view(request, web.Response(), article, path)

    view(first, cached_path, 1, 1_800_000_000.1)
    remembered = recorder._readers[f"{COOKIE}={first}"].line
    view(first, cached_path, 1, 1_800_000_000.2)
    assert recorder._readers[f"{COOKIE}={first}"].line is remembered  # reused, not made again
    view(first, None, 1, 1_800_000_000.3)  # the same page, its path made anew
    view(first, cached_path, None, 1_800_000_000.4)  # the same path, no article
    view(second, cached_path, 1, 1_800_000_000.5)  # another reader
    view(first, "/b-2", 2, 1_800_000_000.6)
    view(first, "/c-1", 1, 1_800_000_000.65)  # another page, the same article
    view(first, cached_path, 1, 1_800_000_000.7)  # back to the first page
    view(first, cached_path, 1, 1_800_000_001.1)  # the next second
    view(None, cached_path, 1, 1_800_000_001.2)  # no cookie: a visitor by address, not kept
    view(None, cached_path, 1, 1_800_000_001.3)
    assert "" not in recorder._readers
    one, two = ("c" + vid.split(".")[0] for vid in (first, second))
    lines = [(n, line) for line, n in recorder.lines.items()]
    assert lines[:6] == [
        (4, f"1800000000 0 1 {one} /a-1"),
        (1, f"1800000000 0  {one} /a-1"),
        (1, f"1800000000 0 1 {two} /a-1"),
        (1, f"1800000000 0 2 {one} /b-2"),
        (1, f"1800000000 0 1 {one} /c-1"),
        (1, f"1800000001 0 1 {one} /a-1"),
    ]
    (n, anonymous), *rest = lines[6:]
    assert n == 2 and not rest and anonymous.startswith("1800000001 0 1 h")
    assert recorder.waiting == 11


# --- crashes -------------------------------------------------------------------------------------


async def test_a_refused_write_costs_only_its_own_key(
    site: Any, r: redis_lib.Redis, clean: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis keeps what a failed script wrote: an article counter that is not a number (a
    hand edit, a bug) must not stop the batch half-way, with the total counted and the day,
    the visitors and the stream left behind."""
    article_id, _ = article(clean)
    r.set(keys.article_views(article_id), "not a number")
    for _ in range(5):
        await view(site, f"/tin-tuc/bai-viet-{article_id}", vid=cookie())
    await flushed(site)
    with caplog.at_level("ERROR", logger="shared.counting.count"):
        tally = drain(r, clean.zone, clean.require_backends()[0], budget=5)
    assert tally["counted"] == 5 and tally["refused"] == 1
    assert "Redis refused 1 of the writes counting 5 page views" in caplog.text
    assert r.xlen(keys.HITS_STREAM) == 0
    body = await stats(site)
    assert (body["total"], body["today_views"], body["online"]) == (5, 5, 5)
    assert r.get(keys.article_views(article_id)) == b"not a number"


async def test_drain_process_killed_while_draining(
    site: Any, r: redis_lib.Redis, clean: Settings
) -> None:
    """A real drain, in a process of its own, is SIGKILLed while it works through a long
    stream; what it counted stays counted, and the rest is counted once after it."""
    article_id, _ = article(clean)
    now, n, batch = int(time.time()), 100_000, 500
    pipe = r.pipeline(transaction=False)
    for start in range(0, n, batch):  # as the publishers append: one entry a batch
        views = "\n".join(
            f"{now} {int(i % 10 == 0)} {article_id} c{i % 700:015d} /"
            for i in range(start, start + batch)
        )
        pipe.xadd(keys.HITS_STREAM, {"n": batch, "b": views})
    pipe.incrby(keys.HITS_WAITING, n)
    pipe.execute()
    # The drain one script at a time (budget=0), slowed down a little so that the kill lands
    # among them (each is one atomic script: a kill can only land between two).
    code = (
        "import sys, time, redis\n"
        "from shared.settings import Settings\n"
        "from shared.counting.count import drain\n"
        "s = Settings.from_env()\n"
        "r = redis.Redis.from_url(sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    drain(r, s.zone, s.require_backends()[0], budget=0)\n"
        "    time.sleep(0.01)\n"
    )
    r.set(keys.TOTAL, 0)
    async with python_child(code, clean) as (proc, line):
        assert line == b"ready"
        await until(lambda: int(r.get(keys.TOTAL) or 0) > 0, "the drain started", 30)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    counted_before = int(r.get(keys.TOTAL) or 0)
    assert 0 < counted_before < n - n // 10  # killed in the middle
    database_url = clean.require_backends()[0]
    while r.xlen(keys.HITS_STREAM):
        drain(r, clean.zone, database_url)
    humans = n - n // 10
    assert int(r.get(keys.TOTAL) or 0) == humans
    assert int(r.get(keys.BOTS) or 0) == n // 10
    assert int(r.get(keys.article_views(article_id)) or 0) == humans
    day = datetime.fromtimestamp(now, clean.zone).date().isoformat()
    assert int(r.get(keys.day_views(day)) or 0) == humans
    # 700 visitors, every tenth view a bot's: as i % 10 == (i % 700) % 10, 70 are only bots.
    assert r.pfcount(keys.day_visitors(day)) == pytest.approx(630, rel=0.03)
    assert r.zcard(keys.ONLINE) == 630
    assert r.xpending(keys.HITS_STREAM, keys.HITS_GROUP)["pending"] == 0
    assert r.sismember(keys.VIEWS_DIRTY, str(article_id))
    assert lag(r) == 0


@pytest.mark.parametrize(
    "zone",
    [
        "Asia/Ho_Chi_Minh",
        "America/New_York",
        "Australia/Lord_Howe",  # DST of half an hour
        "Pacific/Chatham",  # +12:45 / +13:45
        "Pacific/Kiritimati",  # +14
        "Pacific/Pago_Pago",  # -11
        "America/St_Johns",  # -3:30 / -2:30
        "UTC",
    ],
)
async def test_days_in_the_sites_time_zone(
    site: Any, r: redis_lib.Redis, clean: Settings, zone: str
) -> None:
    """The drain script finds each view's day in the site's zone from the offsets the worker
    passes: around every offset change, at local midnights, and at random, as Python does."""
    import random
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    now = int(time.time())
    offsets = zone_offsets(tz, now // 3600)
    instants = [now - 600, now + 3600]
    for change in offsets[1::2]:
        instants += [change + d for d in (-3601, -1, 0, 1, 3599, 86399)]
    for back in range(0, 400, 7):
        midnight = datetime.fromtimestamp(now - back * 86400, tz).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        at = int(midnight.timestamp())
        instants += [at - 1, at, at + 1]
    rng = random.Random(7)
    instants += [rng.randrange(now - 399 * 86400, now + 86400) for _ in range(300)]
    expected: dict[str, int] = {}
    for i, at in enumerate(instants):
        r.xadd(keys.HITS_STREAM, {"n": 1, "b": f"{at} 0  c{i:015d} /"})
        day = datetime.fromtimestamp(at, tz).date().isoformat()
        expected[day] = expected.get(day, 0) + 1
    r.set(keys.TOTAL, 0)
    drain(r, tz, clean.require_backends()[0])
    assert int(r.get(keys.TOTAL) or 0) == len(instants)
    found = {
        key.decode().split(":")[-2]: int(r.get(key) or 0)
        for key in r.scan_iter(match=keys.day_views("*"), count=1000)
    }
    assert found == expected


async def test_graceful_shutdown_loses_no_buffered_view(site: Any, r: redis_lib.Redis) -> None:
    recorder = site.server.app[hits_key]
    recorder.interval, recorder.flush_at = 3600.0, 10**9
    await asyncio.sleep(0.3)  # the flusher's current short wait ends; the next one is long
    for _ in range(6):
        assert (await view(site, "/", vid=cookie())).status == 200
    assert r.xlen(keys.HITS_STREAM) == 0
    assert recorder.waiting == 6
    await site.close()  # the app's cleanup: stop the flusher, flush what is left
    [(_, fields)] = r.xrange(keys.HITS_STREAM)
    assert sorted(fields) == [b"b", b"n"]
    assert fields[b"n"] == b"6"
    lines = fields[b"b"].decode().split("\n")
    assert len(lines) == 6
    for line in lines:
        seen, bot, article_id, visitor, path = line.split(" ")
        assert (bot, article_id, visitor[0], path) == ("0", "", "c", "/")
        assert abs(int(seen) - time.time()) < 60
    assert int(r.get(keys.HITS_WAITING) or 0) == 6


async def test_shutdown_when_a_cancellation_would_be_swallowed(
    site: Any, r: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flusher is stopped by a flag, not by cancelling it: a cancellation that lands in
    the Redis client's call may come out as a connection error, and a flusher stopped by
    cancellation then waited for ever, holding the shutdown (seen in the suite)."""
    recorder = site.server.app[hits_key]
    real_flush = recorder.flush
    calls = 0

    async def flush_like_a_client_that_swallows_cancellation() -> int:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            raise redis_lib.exceptions.ConnectionError("connection lost") from None
        return await real_flush()

    recorder.interval = 0.001  # the flusher is almost always inside flush()
    monkeypatch.setattr(recorder, "flush", flush_like_a_client_that_swallows_cancellation)
    await until(lambda: calls >= 3, "the flusher runs")
    assert (await view(site, "/", vid=cookie())).status == 200
    started = time.monotonic()
    await asyncio.wait_for(site.close(), 5)  # the app's cleanup, flusher included
    assert time.monotonic() - started < 2
    assert int(r.get(keys.HITS_WAITING) or 0) == 1  # and the last flush still sent the view


# --- persistence ---------------------------------------------------------------------------------


async def test_emptied_redis_is_restored_from_postgresql(
    site: Any, r: redis_lib.Redis, clean: Settings
) -> None:
    article_id, path = article(clean)
    for _ in range(3):
        await view(site, path, vid=cookie())
    await view(site, "/", vid=cookie())
    await flushed(site)
    await drained(r)
    send(PERSIST)
    await until(lambda: pg_counter(clean, "total") == 4, "the total reached PostgreSQL")
    await until(lambda: pg_article_views(clean, article_id) == 3, "the article's views too")
    # nothing left to copy (the marks go just after the article's views are written)
    await until(lambda: r.scard(keys.VIEWS_DIRTY) == 0, "the copied article unmarked")

    # Redis loses everything: the next copy restores instead of writing zeros over PostgreSQL.
    wipe_counters(r)
    send(PERSIST)
    await until(lambda: r.get(keys.TOTAL) == b"4", "the total came back")
    assert r.get(keys.article_views(article_id)) == b"3"
    assert pg_counter(clean, "total") == 4

    # Lost again, with views waiting: the drain restores first, then counts on top.
    wipe_counters(r)
    for _ in range(2):
        await view(site, path, vid=cookie())
    await flushed(site)
    await drained(r)
    body = await stats(site)
    assert body["total"] == 6 and body["today_views"] == 6
    assert r.get(keys.article_views(article_id)) == b"5"
    send(PERSIST)
    await until(lambda: pg_article_views(clean, article_id) == 5, "the new views persisted")
    assert pg_counter(clean, "total") == 6


async def test_set_total_from_the_command_line(
    site: Any, r: redis_lib.Redis, clean: Settings
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bantin.cli", "counters", "set-total", "5336272"],
        cwd=ROOT,
        env={**os.environ, **clean.to_env()},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert r.get(keys.TOTAL) == b"5336272"
    assert pg_counter(clean, "total") == 5336272
    for _ in range(2):
        await view(site, "/", vid=cookie())
    await flushed(site)
    await drained(r)
    assert (await stats(site))["total"] == 5336274
    # The page's statistics block: a snapshot of at most a second (and this view adds one).
    for _ in range(100):
        page = await view(site, "/", vid=cookie())
        if "5336274" in await page.text():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the page never showed the total")


# --- the visitor's cookie ------------------------------------------------------------------------

VALUE = "benchreader00042.20261124.000000000000002a"
GROUPS = ("benchreader00042", "20261124", "000000000000002a")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{COOKIE}={VALUE}", GROUPS),
        (f"_ga=GA1.2.1.1700000000; _gid=GA1.2.9.1700000000; {COOKIE}={VALUE}; theme=dark", GROUPS),
        (f"  {COOKIE}={VALUE}  ;x=1", GROUPS),
        (f"a=1;\t{COOKIE}={VALUE}", GROUPS),
        (f"x{COOKIE}={VALUE}", None),  # another cookie whose name ends like ours
        (f"a=1 {COOKIE}={VALUE}", None),  # not after a ";"
        (f"{COOKIE}={VALUE}x", None),
        (f"{COOKIE}={VALUE[:-1]}; other={VALUE}", None),
        (f"{COOKIE}=bad; x{COOKIE}={VALUE}; {COOKIE}={VALUE}", GROUPS),
        ("_ga=GA1.2.1.1700000000", None),
        ("", None),
    ],
)
def test_the_visitor_cookie_is_found_only_where_a_cookie_starts(
    header: str, expected: tuple[str, str, str] | None
) -> None:
    assert find_cookie(header) == expected


def test_finding_the_cookie_agrees_with_its_one_pattern_definition() -> None:
    """find_cookie() is a faster spelling of one regular expression: they agree on headers made
    of the pieces that matter (names, values good and bad, separators, Unicode spaces)."""
    import random
    import re

    definition = re.compile(
        rf"(?:^|;)\s*{COOKIE}=([A-Za-z0-9_-]{{16}})\.(\d{{8}})\.([0-9a-f]{{16}})\s*(?:;|$)"
    )
    pieces = [f"{COOKIE}=", VALUE, VALUE[1:], VALUE.upper(), ";", " ", "\t", "\u00a0", "\n"]
    pieces += ["x", "=", "a=b", COOKIE, ".", "1", f"{COOKIE}={VALUE}", f"; {COOKIE}={VALUE}"]
    rng = random.Random(7)
    found = 0
    for _ in range(20_000):
        header = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        match = definition.search(header)
        assert find_cookie(header) == (match.groups() if match else None), repr(header)
        found += match is not None
    assert found > 1000  # the comparison saw many cookies, not only misses


# --- outages, stops and odd clients --------------------------------------------------------------


async def raw_get(site: Any, path: str, header_lines: bytes) -> tuple[int, bytes]:
    """A GET sent byte for byte (aiohttp's client sends only what it can encode): its status
    and its head."""
    reader, writer = await asyncio.open_connection(site.server.host, site.server.port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bantin.test\r\n".encode()
        + header_lines
        + b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), head


async def test_a_user_agent_that_is_not_utf8_reads_like_any_reader(
    site: Any, r: redis_lib.Redis
) -> None:
    """Issue 22: `User-Agent: Mozilla/5.0 \\xe9` got a 500 on every counted page (the hash of
    address and User-Agent encoded the header's undecodable byte as UTF-8)."""
    for _ in range(3):  # the application's answer, then the front door's
        status, head = await raw_get(site, "/", b"User-Agent: Mozilla/5.0 \xe9\r\n")
        assert status == 200, head
        assert f"Set-Cookie: {COOKIE}=".encode() in head
    await flushed(site)
    await drained(r)
    body = await stats(site)
    assert (body["total"], body["today_visitors"]) == (3, 1)  # one address, one User-Agent


async def test_statistics_answer_the_last_known_figures_while_redis_is_away(
    aiohttp_client: Any, clean: Settings, tmp_path: Any
) -> None:
    """Issue 22: with Redis paused, /api/v1/stats and every page answered 500. Now the last
    figures known answer (the page's statistics block too); before any is known, a 503."""
    from bantin.embedded import EmbeddedRedis
    from services.publisher.cache import LIVE_SECONDS
    from tests.conftest import publisher

    server = EmbeddedRedis(tmp_path)
    proc = server.start()
    private = redis_lib.Redis.from_url(server.url)
    try:
        await until(lambda: _pings(private), "the private Redis answers", 30)
        private.set(keys.TOTAL, 5336272)
        site = await publisher(aiohttp_client, clean.with_(redis_url=server.url))
        proc.send_signal(signal.SIGSTOP)
        response = await site.get("/api/v1/stats")
        assert response.status == 503 and "Retry-After" in response.headers
        assert response.content_type == "application/problem+json"
        proc.send_signal(signal.SIGCONT)

        known = await stats(site)
        assert known["total"] == 5336272
        page = await site.get("/")
        assert page.status == 200 and "5336272" in await page.text()
        proc.send_signal(signal.SIGSTOP)
        assert await stats(site) == known
        await asyncio.sleep(LIVE_SECONDS)  # the page's snapshot is due: Redis is asked, in vain
        for path in ("/", "/"):  # the application, then the front door
            page = await site.get(path)
            assert page.status == 200 and "5336272" in await page.text()
        proc.send_signal(signal.SIGCONT)
        await site.close()
    finally:
        proc.send_signal(signal.SIGCONT)
        private.close()
        proc.terminate()
        proc.wait(30)


def _pings(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.exceptions.ConnectionError:
        return False


async def test_a_graceful_stop_then_an_emptied_redis_loses_no_view(
    site: Any, r: redis_lib.Redis, clean: Settings, tmp_path: Any
) -> None:
    """Issue 22: after a stop, Redis emptied (its volume lost) took the views counted since the
    last copy, and today's visitors restarted at 0. SIGTERM a real publisher (it flushes what it
    holds) and a real counters worker (it drains and copies to PostgreSQL); empty Redis; every
    figure comes back, today's visitors included."""
    from aiohttp import ClientSession

    from bantin.embedded import free_port

    article_id, path = article(clean)
    env = {**os.environ, **clean.to_env()}
    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("publisher", "worker")}
    argv = {
        "publisher": ["publisher", "--host", "127.0.0.1", "--port", str(port)],
        "worker": ["worker", "--concurrency", "1", "--queues", "counters"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bantin.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=logs[name],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, args in argv.items()
    }
    visitors = [cookie() for _ in range(7)]
    try:
        worker_log = tmp_path / "worker.log"
        await until(lambda: b" ready." in worker_log.read_bytes(), "the worker is ready", 90)
        async with ClientSession(f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                with contextlib.suppress(OSError):
                    async with http.get("/healthz") as health:
                        if health.status == 200:
                            break
                await asyncio.sleep(0.1)
            for vid in visitors:
                for page in ("/", path, "/tin-tuc/"):
                    async with http.get(page, headers={"Cookie": f"{COOKIE}={vid}"}) as got:
                        assert got.status == 200
        for name in ("publisher", "worker"):
            procs[name].send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(procs[name].wait, 60) == 0, name
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    today = datetime.now(clean.zone).date().isoformat()
    assert r.xlen(keys.HITS_STREAM) == 0  # counted before the stop
    assert pg_counter(clean, "total") == 21
    assert pg_counter(clean, f"day:{today}:visitors") == 7
    assert pg_article_views(clean, article_id) == 7

    stale = list(r.scan_iter(match="bantin:*"))  # Redis loses everything
    r.delete(*stale)
    send(PERSIST)  # finds Redis empty: restores instead
    await until(lambda: r.get(keys.TOTAL) == b"21", "the total came back")
    assert await stats(site) == {
        "online": 0,  # who is online now is not kept (five minutes' worth)
        "total": 21,
        "today_views": 21,
        "today_visitors": 7,
    }
    await view(site, "/", vid=visitors[0])  # a reader of today: still one of the seven
    await view(site, "/", vid=cookie())  # a new one
    await flushed(site)
    await drained(r)
    body = await stats(site)
    assert (body["total"], body["today_views"], body["today_visitors"]) == (23, 23, 8)
    assert r.get(keys.article_views(article_id)) == b"7"
