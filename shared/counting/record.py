"""The publisher's step: one view per HTML page a reader got (200 or 304), and who the reader
is; its wiring into the app, and the statistics the site shows. No feed, media, static file,
health check, API call, error page, redirect, HEAD request or prefetch is a view. Bots are
recorded but flagged: the drain counts them apart.

A reader is its first-party cookie `bantin_vid`. Without it, a keyed hash of (client IP,
User-Agent), and the cookie it receives carries that hash and the day: the rest of that day it
counts under the hash (a new reader's first view and the next are one visitor), from the next
day on under the cookie's random part (readers behind one NAT with the same phone are not
merged for ever). Clients that keep no cookies stay one visitor per (IP, User-Agent).

A view costs a dictionary update (its line -> its views); the flusher sends the lines in
batches, each appended once whatever becomes of the answer (stream.append): a XADD, a delivery
and a deletion a view were most of what counting cost Redis. While Redis is away the batches
wait (at most MAX_HELD lines); the app's shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import random
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import hdrs, web
from multidict import istr
from psycopg.types.json import Jsonb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.counting.count import ask_shown
from shared.counting.stream import Batch, append
from shared.problems import Problem
from shared.settings import Settings
from shared.web import client_address, pool_key, redis_key, settings_key

log = logging.getLogger(__name__)

COOKIE = "bantin_vid"
COOKIE_MAX_AGE = 365 * 24 * 3600
MEMO_SIZE = 10_000  # User-Agents and Cookie headers remembered; beyond, forgotten at once
MEMO_HEADER = 512  # longer Cookie headers or User-Agents are not remembered (the client's say)
_SEC_PURPOSE, _PURPOSE = istr("Sec-Purpose"), istr("Purpose")
_now = time.time  # the views' clock (tests set it)
FLUSH_INTERVAL = 0.1  # seconds: the longest a view waits in the process
FLUSH_AT = 2000  # different views (lines) that wake the flusher, and the largest batch
MAX_HELD = 200_000  # lines held while Redis is unreachable; beyond, the oldest are dropped
CLOSE_WAIT = 10.0  # seconds the flusher has to stop on shutdown
FIGURES_WAIT = 1.0  # seconds the statistics wait for Redis before the last known ones answer

# Crawlers, previewers, monitors, and HTTP tools no browser is (curl, wget, python-requests:
# uptime checks and scripts). aiohttp is not one: the test suite reads pages as a reader would.
BOT_AGENTS = re.compile(
    r"bot|crawl|spider|slurp|facebookexternalhit|preview|curl|wget|python-requests"
    r"|python-urllib|go-http-client|okhttp|java/|libwww|httpclient|headless|lighthouse"
    r"|pingdom|uptime|monitor",
    re.IGNORECASE,
)
# A bantin_vid cookie from its name on: (random part, day, first hash). It starts with a
# literal, which the regular expression engine finds by a fast scan (see find_cookie()).
_COOKIE_IN_HEADER = re.compile(
    rf"{COOKIE}=([A-Za-z0-9_-]{{16}})\.(\d{{8}})\.([0-9a-f]{{16}})\s*(?:;|$)"
)


class Reader:
    """A reader remembered for its Cookie header, with its last view and that view's line: the
    same page in the same second (a reload, a script) reuses the string, whose hash is kept."""

    __slots__ = ("agent", "article", "bot", "line", "path", "second", "visitor")
    article: int | None

    def __init__(self, agent: str, visitor: str, bot: bool) -> None:
        self.agent, self.visitor, self.bot = agent, visitor, "1" if bot else "0"
        self.second = self.path = self.line = ""
        self.article = None


def find_cookie(header: str) -> tuple[str, str, str] | None:
    """What `(?:^|;)\\s*bantin_vid=<value>\\s*(?:;|$)` finds in a Cookie header, as (random
    part, day, first hash); that pattern, with no literal to start from, is twice as slow."""
    found = _COOKIE_IN_HEADER.search(header)
    while found is not None:
        before = header[: found.start()].rstrip()
        if not before or before[-1] == ";":  # the name starts the header or follows a ";"
            return found[1], found[2], found[3]
        found = _COOKIE_IN_HEADER.search(header, found.start() + 1)
    return None


class Recorder:
    """A publisher's views: page_view() is all a served page pays, kept to lookups; the flusher
    (start(), close()) sends them to the stream."""

    def __init__(self, redis: Redis, settings: Settings, key: bytes = b"") -> None:
        self.redis = redis
        self.interval, self.flush_at, self.dropped = FLUSH_INTERVAL, FLUSH_AT, 0
        self.lines: dict[str, int] = {}  # the stream's lines -> their number of views
        self._batches: deque[Batch] = deque()  # not known to be in Redis yet, oldest first
        self._held = 0  # lines in _batches
        self._wake, self._lock = asyncio.Event(), asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.key = key  # the site's secret: no one can reverse a hash by trying every IPv4
        self.zone = settings.zone
        self.https = settings.public_url.startswith("https://")
        self.enabled = settings.count_views
        self.proxies = settings.proxy_networks
        self._bots: dict[str, bool] = {}
        # The cookie's random part only tells browsers apart: no need of os.urandom per view.
        self._random = random.Random(secrets.randbits(128))  # noqa: S311 (guards nothing)
        self._today = ""
        self._cookie_tail = f"; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax"
        self._readers: dict[str, Reader] = {}  # Cookie header -> its reader, for today
        self._second_text = "0"  # the current second as the stream writes it, and its bounds
        self._second_starts = self._second_ends = 0.0

    def page_view(
        self,
        request: web.Request,
        response: web.StreamResponse,
        article_id: int | None = None,
        path: str | None = None,
    ) -> None:
        """Record one view of a page answered 200 or 304; give a new reader its cookie."""
        if not self.enabled or request.method != "GET":
            return
        headers = request.headers
        if _SEC_PURPOSE in headers or _PURPOSE in headers:
            purpose = headers.get(_SEC_PURPOSE) or headers.get(_PURPOSE) or ""
            if "prefetch" in purpose.lower():
                return
        agent = headers.get(hdrs.USER_AGENT, "")
        header = headers.get(hdrs.COOKIE, "")
        now = _now()
        if not self._second_starts <= now < self._second_ends:
            self._tick(now)
        reader = self._readers.get(header)
        if reader is None or reader.agent != agent:
            reader = self._reader(request, response, agent, header)
        if path is None:
            path = request.path
        second = self._second_text
        if reader.second is second and reader.article == article_id and reader.path == path:
            line = reader.line
        else:  # the stream's format (stream.py)
            line = f"{second} {reader.bot} {article_id or ''} {reader.visitor} {path}"
            reader.second, reader.path, reader.article, reader.line = second, path, article_id, line
        lines = self.lines
        lines[line] = lines.get(line, 0) + 1
        if len(lines) >= self.flush_at:
            self._wake.set()

    def _tick(self, now: float) -> None:
        """Another second (or the clock stepped back). A new day forgets the readers: a cookie
        given yesterday names its browser differently today."""
        if (today := datetime.fromtimestamp(now, self.zone).strftime("%Y%m%d")) != self._today:
            self._today = today
            self._readers.clear()
        second = int(now)
        self._second_text = str(second)
        self._second_starts, self._second_ends = float(second), second + 1.0

    def _reader(
        self, request: web.Request, response: web.StreamResponse, agent: str, header: str
    ) -> Reader:
        """A reader not remembered with this User-Agent: remembered if it has our cookie (and
        short headers), else named by its address and given a cookie."""
        bot = self._bots.get(agent)
        if bot is None:
            if len(self._bots) > MEMO_SIZE:
                self._bots.clear()
            # an empty User-Agent is a script too: every browser sends one
            bot = self._bots[agent] = not agent or BOT_AGENTS.search(agent) is not None
        # Found in the raw header: request.cookies' Morsels cost more than all the rest.
        if (found := find_cookie(header)) is not None:
            random_part, day, first = found
            reader = Reader(agent, "h" + first if day == self._today else "c" + random_part, bot)
            if len(header) <= MEMO_HEADER and len(agent) <= MEMO_HEADER:
                if len(self._readers) > MEMO_SIZE:
                    self._readers.clear()
                self._readers[header] = reader
            return reader
        # A header's bytes that are not UTF-8 came as surrogates: hashed as they came.
        seen = f"{client_address(request, self.proxies)}\n{agent}"
        digest = hashlib.blake2b(
            seen.encode("utf-8", "surrogateescape"), key=self.key, digest_size=8
        ).hexdigest()
        if not bot:  # written directly: http.cookies costs more than the rest together
            token = base64.urlsafe_b64encode(self._random.randbytes(12)).decode()
            secure = "; Secure" if self.https or request.secure else ""
            response.headers.add(
                "Set-Cookie",
                f"{COOKIE}={token}.{self._today}.{digest}{self._cookie_tail}{secure}",
            )
        return Reader(agent, "h" + digest, bot)

    def add(self, line: str) -> None:
        """One view, as its line in the stream's format."""
        self.lines[line] = self.lines.get(line, 0) + 1
        if len(self.lines) >= self.flush_at:
            self._wake.set()

    @property
    def waiting(self) -> int:
        """Views in this process not known to be in the stream yet."""
        return sum(self.lines.values()) + sum(batch.views for batch in self._batches)

    async def flush(self) -> int:
        """Send every waiting view; returns how many went. Raises on a Redis error, keeping what
        was not sent (with its token) for the next attempt."""
        async with self._lock:
            items, self.lines = list(self.lines.items()), {}
            for i in range(0, len(items), self.flush_at):
                part = items[i : i + self.flush_at]
                lines = [line if n == 1 else f"*{n} {line}" for line, n in part]
                self._batches.append(Batch(secrets.token_hex(12), sum(n for _, n in part), lines))
            self._held += len(items)
            while self._held > MAX_HELD and len(self._batches) > 1:
                lost = self._batches.popleft()
                self._held -= len(lost.lines)
                self.dropped += lost.views
                log.error("Redis unreachable: dropped %d page views (%d)", lost.views, self.dropped)
            sent = 0
            while self._batches:
                await append(self.redis, self._batches[0])
                batch = self._batches.popleft()
                self._held -= len(batch.lines)
                sent += batch.views
            return sent

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="bantin-hits-flusher")

    async def _run(self) -> None:
        failing = False
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set (CPython gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("cannot send page views to Redis (%s); holding them", err)
                failing = True
                await asyncio.sleep(1)  # do not spin on a dead Redis
            else:
                if failing:
                    log.info("page views reach Redis again")
                failing = False

    async def close(self) -> None:
        """Stop the flusher, then send everything left (three attempts: Redis may blink). The
        flusher is asked to stop: the Redis client, or asyncio.timeout on 3.11, can swallow a
        cancellation, so it is cancelled (never awaited) only after CLOSE_WAIT seconds."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await asyncio.wait({self._task}, timeout=CLOSE_WAIT)
            if self._task.done() and not self._task.cancelled() and self._task.exception():
                log.error("the page-view flusher had stopped", exc_info=self._task.exception())
            self._task.cancel()  # nothing if it has stopped
            self._task = None
        for attempt in range(3):
            try:
                await self.flush()
                return
            except (RedisError, OSError) as err:
                log.warning("final flush of page views failed (%s), attempt %d", err, attempt + 1)
                await asyncio.sleep(0.5)
        log.error("shutting down with %d page views not sent", self.waiting)


hits_key = web.AppKey("hits", Recorder)


async def recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: start the flusher with the app, flush the rest on shutdown.
    Append it after the clients' context, so that Redis is still open when it exits."""
    recorder = Recorder(app[redis_key], app[settings_key], await visitor_key(app[pool_key]))
    app[hits_key] = recorder
    recorder.start()
    try:
        yield
    finally:
        await recorder.close()


async def visitor_key(pool: Any) -> bytes:
    """The site's secret for hashing visitors without a cookie: made once, kept in PostgreSQL
    (so every replica, and every restart, hashes a visitor the same way)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO site_meta (key, value) VALUES ('visitor_key', %s) ON CONFLICT DO NOTHING",
            (Jsonb(secrets.token_hex(32)),),
        )
        cur = await conn.execute("SELECT value FROM site_meta WHERE key = 'visitor_key'")
        row = await cur.fetchone()
    assert row is not None
    return bytes.fromhex(row["value"])


def record(
    request: web.Request, response: web.StreamResponse, article_id: int | None = None
) -> None:
    """For page handlers: count this view (an app built without the recorder counts nothing)."""
    recorder = request.app.get(hits_key)
    if recorder is not None:
        recorder.page_view(request, response, article_id)


class Statistics:
    """What the site shows (GET /api/v1/stats): visitors online, the total, today's views and
    visitors; the last ones known while Redis is away."""

    def __init__(self) -> None:
        self.last: dict[str, int] | None = None
        self.failing = False

    async def read(self, request: web.Request) -> dict[str, int]:
        day = datetime.now(request.app[settings_key].zone).date().isoformat()
        pipe = request.app[redis_key].pipeline(transaction=False)
        ask_shown(pipe)
        pipe.get(keys.day_views(day))
        pipe.pfcount(keys.day_visitors(day))
        try:
            async with asyncio.timeout(FIGURES_WAIT):
                online, total, views, visitors = (int(x or 0) for x in await pipe.execute())
            self.last = {"online": online, "total": total}
            self.last |= {"today_views": views, "today_visitors": visitors}
            self.failing = False
        except (RedisError, OSError, TimeoutError) as err:
            if self.last is None:
                raise Problem(
                    503,
                    "Statistics unavailable",
                    "The counters cannot be reached; try again shortly.",
                    headers={"Retry-After": "5"},
                ) from err
            if not self.failing:
                log.warning("statistics: Redis unreachable (%r); answering the last known", err)
            self.failing = True
        return self.last


statistics_key = web.AppKey("statistics", Statistics)
