"""Page views, recorded by the readers' site: cheap on the request path, exactly once into Redis.

What counts: a GET of an HTML page answered 200 (home, category, article, search pages). Not
feeds, media, static files, health checks or the API, which never call the recorder; not
redirects nor error pages (404, 410, 5xx: a reader who missed the page did not read it, and
scanners probing addresses would otherwise inflate the count); not HEAD requests nor browser
prefetches (nobody saw those). Known bots are recorded but flagged, and the counters worker keeps
them out of the totals (they have a counter of their own).

Each view costs a dictionary update: identical views (the same reader, by its cookie and
User-Agent, page and article in the same second) are held once with their number. A flusher
task sends the buffer to the Redis stream `keys.HITS_STREAM` every FLUSH_INTERVAL, or sooner
once FLUSH_AT different views wait, in batches of at most FLUSH_AT lines through one Lua
script per batch: the script first claims the batch's random token (SET NX with an expiry) and
only then appends the whole batch as one stream entry. A batch whose answer is lost (a timeout
after Redis applied it) is sent again with the same token and is then a no-op, so a flaky
connection neither loses nor doubles views. A graceful shutdown flushes what is left (the
aiohttp cleanup context below runs after the last request has been answered).

One entry a batch, not one a view: an XADD, a delivery and a deletion per view were most of what
counting cost Redis, which shares the machine with the publishers. And one line per different
view, not per view: a reader reloading a page, a script or a crawler hammering one address, a
load test, all cost the counters worker one line a second, whatever their rate (for readers
who each read a page now and then, every line holds one view, and nothing changes). The views
waiting in the stream (its lag) are kept in a counter beside it, `keys.HITS_WAITING`, raised by
the append and lowered by the counters worker in the scripts that add and count the entries;
the stream is bounded by that count (STREAM_MAXLEN views), not by its number of entries.

Visitors: a first-party cookie `bantin_vid`. A request without it is identified by a keyed hash
of (client IP, User-Agent), the IP behind trusted reverse proxies being the one they forwarded
(`shared.web.client_address`), and the cookie it receives carries that hash and the day: views on
the day the cookie was given keep counting under the hash, so a new reader's first view and the
next ones are one visitor, not two; from the next day on the cookie's random part identifies the
browser (readers behind one carrier NAT with the same phone are not merged for ever). Clients
that keep no cookies (most bots, scripts) stay one visitor per (IP, User-Agent).
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
from zoneinfo import ZoneInfo

from aiohttp import hdrs, web
from multidict import istr
from psycopg.types.json import Jsonb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.settings import Settings
from shared.web import client_address, pool_key, redis_key, settings_key

log = logging.getLogger(__name__)

COOKIE = "bantin_vid"
COOKIE_MAX_AGE = 365 * 24 * 3600
FLUSH_INTERVAL = 0.1  # seconds: the longest a view waits in the process
# Different views (lines) that wake the flusher early; also the largest batch. Each flush costs
# the process about 150 us of the Redis client's Python whatever its size: at 30,000 views/s,
# batches of 500 made that 1% of a busy publisher's time.
FLUSH_AT = 2000
# Views the stream holds at most: beyond, the oldest batches go. In views, not lines, so that
# the lag it bounds is the one the metric shows (a starred line of many views weighs them all).
STREAM_MAXLEN = 1_000_000
TRIM_STEP = 100  # entries one append deletes at most to stay within STREAM_MAXLEN
BATCH_TOKEN_TTL = 600  # seconds a batch's token guards against a repeated append
CLOSE_WAIT = 10.0  # seconds the flusher has to stop on shutdown
MAX_HELD = 200_000  # lines kept while Redis is unreachable; beyond, the oldest are dropped
MEMO_SIZE = 10_000  # User-Agents and Cookie headers remembered; beyond, forgotten at once
# Readers whose Cookie header or User-Agent is longer are not remembered (their memory would be
# the client's say).
MEMO_HEADER = 512
_SEC_PURPOSE, _PURPOSE = istr("Sec-Purpose"), istr("Purpose")
_now = time.time  # the views' clock (tests set it)

# Self-declared crawlers, link previewers, monitors and the HTTP tools browsers never send.
# curl, wget and python-requests count as bots: uptime checks and scripts, not readers. aiohttp
# does not (the test suite reads pages with it, as a reader would), nor do other browsers.
BOT_AGENTS = re.compile(
    r"bot|crawl|spider|slurp|facebookexternalhit|preview|curl|wget|python-requests"
    r"|python-urllib|go-http-client|okhttp|java/|libwww|httpclient|headless|lighthouse"
    r"|pingdom|uptime|monitor",
    re.IGNORECASE,
)
# A well-formed bantin_vid cookie, from its name on: (random part, day, first hash). It starts
# with a literal, which the regular expression engine finds by a fast scan; see find_cookie().
_COOKIE_IN_HEADER = re.compile(
    rf"{COOKIE}=([A-Za-z0-9_-]{{16}})\.(\d{{8}})\.([0-9a-f]{{16}})\s*(?:;|$)"
)

# One view: visitor, path, article id ("" when none), unix seconds, bot ("1"/"0"). In the
# stream a view is one line, "<seconds> <bot> <article> <visitor> <path>": the visitor (cookie
# characters or a hex hash) holds no space, and the path comes last, whatever it holds (but a
# newline, sent as %0A). Identical views of one second are one line with their number before
# it, "*<views> <seconds> ...". A batch is one entry of two fields: `n`, its number of views,
# and `b`, its lines joined by newlines. The counters worker reads this format and the earlier
# ones (one view an entry: a field `h` holding one line, or five fields v, p, a, t, b); a worker
# older than the "*" lines counts the others and acknowledges those as malformed.
Hit = tuple[str, str, str, str, str]
FIELDS = ("n", "b")

# KEYS: stream, the batch's token key, the waiting counter. ARGV: stream bound (views), token
# TTL, the number of views, their lines joined by newlines. Beyond the bound (the counters worker
# has been away for long), the oldest entries are deleted to make room, at most TRIM_STEP per
# append, each batch taking its views off the count (an entry of an earlier format, not in the
# count, takes nothing). A count Redis refuses to raise (text written in it by hand) costs only
# the bound: the batch is appended all the same.
_APPEND = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local added = redis.call('XADD', KEYS[1], '*', 'n', ARGV[3], 'b', ARGV[4])
local waiting = redis.pcall('INCRBY', KEYS[3], ARGV[3])
if type(waiting) ~= 'number' then return tonumber(ARGV[3]) end
local bound, deleted = tonumber(ARGV[1]), 0
while waiting > bound and deleted < tonumber(ARGV[5]) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if oldest[1] == added then
    -- the count had drifted (the stream deleted by hand): it is this entry's views now
    redis.call('SET', KEYS[3], ARGV[3])
    break
  end
  redis.call('XDEL', KEYS[1], oldest[1])
  deleted = deleted + 1
  local f = oldest[2]
  if f[1] == 'n' then waiting = redis.call('DECRBY', KEYS[3], tonumber(f[2]) or 0) end
end
return tonumber(ARGV[3])
"""


# In the process, a reader is remembered for its Cookie header as (User-Agent, visitor, bot "1"
# or "0", then the second, page, article and line of its last view). The User-Agent is compared,
# not hashed, view after view. The same page again in the same second (a reload, a script, a
# load test) is the same line, a string whose hash Python keeps: counting it is a dictionary
# update with no line to write or hash. A tuple, not an object with slots: a new reader costs no
# Python-level __init__, and a tuple of strings and numbers leaves the garbage collector's lists
# (objects of a class stay in them, and the collector walks them again and again while readers
# come and go; perf with 100,000 readers in turn showed it, though not in the CPU per page).
Reader = tuple[str, str, str, str, str, int | None, str]


def find_cookie(header: str) -> tuple[str, str, str] | None:
    """The first well-formed bantin_vid cookie of a Cookie header, as (random part, day, first
    hash): what `(?:^|;)\\s*bantin_vid=<value>\\s*(?:;|$)` would find, but that pattern, with
    no literal to start from, tries every position of the header (twice as slow where other
    cookies, an analytics one say, come first)."""
    found = _COOKIE_IN_HEADER.search(header)
    while found is not None:
        start = found.start()
        before = header[:start].rstrip()
        if not before or before[-1] == ";":  # the name starts the header or follows a ";"
            return found[1], found[2], found[3]
        found = _COOKIE_IN_HEADER.search(header, start + 1)
    return None


def is_bot(user_agent: str) -> bool:
    """An empty User-Agent is a script too: every browser sends one."""
    return not user_agent or BOT_AGENTS.search(user_agent) is not None


class HitRecorder:
    """The process's buffer of views and the task that moves it to Redis."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.zone: ZoneInfo = settings.zone
        self.https = settings.public_url.startswith("https://")
        # Keyed, so that the stream holds no hash anyone could reverse by trying every IPv4
        # address: a random secret of the site, shared by every replica (see visitor_key()).
        self.key = b""
        self.interval = FLUSH_INTERVAL
        self.flush_at = FLUSH_AT
        self.dropped = 0
        self.enabled = settings.count_views
        self.proxies = settings.proxy_networks
        self._bots: dict[str, bool] = {}
        # The cookie's random part tells browsers apart; it guards nothing, so a generator
        # seeded from the OS will do (os.urandom per view showed in profiles).
        self._random = random.Random(secrets.randbits(128))  # noqa: S311 (guards nothing)
        self._today = ""
        self._day_ends = 0.0  # the day string is recomputed once a minute, not per view
        self._cookie_tail = f"; Max-Age={COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=Lax"
        self._readers: dict[str, Reader] = {}  # Cookie header -> its reader, for today
        self._buffer: dict[str, int] = {}  # views as the stream's lines -> how many of each
        # The current second as the stream writes it, and its bounds (looked at per view, the
        # second's text made once a second).
        self._second_text = "0"
        self._second_starts = self._second_ends = 0.0
        # Batches not known to be in Redis yet, oldest first: (token, views, lines).
        self._batches: deque[tuple[str, int, list[str]]] = deque()
        self._held = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._append = redis.register_script(_APPEND)

    # --- the request path -----------------------------------------------------------------------

    def page_view(
        self,
        request: web.Request,
        response: web.StreamResponse,
        article_id: int | None = None,
        path: str | None = None,
    ) -> None:
        """Record one view of an HTML page answered 200; gives the browser its cookie.

        Every page served pays for this, so it is kept to lookups: the reader is remembered
        for its Cookie header (a browser sends the same ones page after page), with the line
        of its last view (see `Reader`); the second's text is made once a second; the view is
        counted in the buffer under the line the stream holds (a string, which the garbage
        collector does not track, unlike a tuple). `path` is the request's path, given by
        callers that hold it already."""
        if not self.enabled or request.method != "GET":
            return
        headers = request.headers
        if (_SEC_PURPOSE in headers or _PURPOSE in headers) and _prefetch(headers):
            return
        agent = headers.get(hdrs.USER_AGENT, "")
        header = headers.get(hdrs.COOKIE, "")
        now = _now()
        if not self._second_starts <= now < self._second_ends:
            self._tick(now)
        readers = self._readers
        reader = readers.get(header)
        if reader is None or reader[0] != agent:
            reader = self._reader(request, response, agent, header)
        if path is None:
            path = request.path
        second = self._second_text
        if reader[3] is second and reader[5] == article_id and reader[4] == path:
            line = reader[6]
        else:
            line = f"{second} {reader[2]} {article_id or ''} {reader[1]} {path}"
            if readers.get(header) is reader:  # remembered (see _reader)
                readers[header] = (reader[0], reader[1], reader[2], second, path, article_id, line)
        buffer = self._buffer
        buffer[line] = buffer.get(line, 0) + 1
        if len(buffer) >= self.flush_at:
            self._wake.set()

    def add(self, hit: Hit) -> None:
        """Buffer one view given as its parts (visitor, path, article, seconds, bot)."""
        visitor, path, article, seconds, bot = hit
        line = f"{seconds} {bot} {article} {visitor} {path}"
        self._buffer[line] = self._buffer.get(line, 0) + 1
        if len(self._buffer) >= self.flush_at:
            self._wake.set()

    def buffered(self) -> list[tuple[int, str]]:
        """The views not sent yet, as (how many, the line the stream will hold), oldest first."""
        return [(n, line) for line, n in self._buffer.items()]

    def _tick(self, now: float) -> None:
        """A view in another second than the last one (or the clock stepped back)."""
        if now >= self._day_ends:
            self._new_minute(now)
        second = int(now)
        self._second_text = str(second)
        self._second_starts, self._second_ends = float(second), second + 1.0

    def _new_minute(self, now: float) -> None:
        """The day is looked at once a minute; a new one forgets the readers known by cookie
        (a cookie given yesterday names its browser differently today, see the module)."""
        moment = datetime.fromtimestamp(now, self.zone)
        today = moment.strftime("%Y%m%d")
        if today != self._today:
            self._today = today
            self._readers.clear()
        self._day_ends = now + 60 - moment.second - moment.microsecond / 1e6

    def _reader(
        self, request: web.Request, response: web.StreamResponse, agent: str, header: str
    ) -> Reader:
        """The reader of a request whose Cookie header (`header`, "" when none) is not
        remembered with this User-Agent, remembered from now on when it has our cookie and
        headers no longer than MEMO_HEADER; gives a new reader its cookie. No last view yet:
        an empty second."""
        bot = self._bots.get(agent)
        if bot is None:
            if len(self._bots) > MEMO_SIZE:
                self._bots.clear()
            bot = self._bots[agent] = is_bot(agent)
        # Found in the raw header: request.cookies parses every cookie into Morsels, which
        # cost more than all the rest of the recording.
        found = find_cookie(header)
        if found is not None:
            random_part, day, first = found
            visitor = "h" + first if day == self._today else "c" + random_part
            reader = (agent, visitor, "1" if bot else "0", "", "", None, "")
            if len(header) <= MEMO_HEADER and len(agent) <= MEMO_HEADER:
                if len(self._readers) > MEMO_SIZE:
                    self._readers.clear()
                self._readers[header] = reader
            return reader
        digest = hashlib.blake2b(
            f"{client_address(request, self.proxies)}\n{agent}".encode(),
            key=self.key,
            digest_size=8,
        ).hexdigest()
        if not bot:
            # Written directly: http.cookies' Morsel machinery costs more than the rest of
            # the recording together, and this value needs no quoting (URL-safe, dots).
            token = base64.urlsafe_b64encode(self._random.randbytes(12)).decode()
            secure = "; Secure" if self.https or request.secure else ""
            response.headers.add(
                "Set-Cookie",
                f"{COOKIE}={token}.{self._today}.{digest}{self._cookie_tail}{secure}",
            )
        return (agent, "h" + digest, "1" if bot else "0", "", "", None, "")

    # --- to Redis -------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Views in this process not known to be in the stream yet."""
        return sum(self._buffer.values()) + sum(views for _, views, _ in self._batches)

    async def flush(self) -> int:
        """Send every waiting view; returns how many went. Raises on a Redis error, keeping what
        was not sent (with its token) for the next attempt."""
        async with self._lock:
            if self._buffer:
                held, self._buffer = self._buffer, {}
                items = list(held.items())
                for i in range(0, len(items), self.flush_at):
                    part = items[i : i + self.flush_at]
                    lines = [line if n == 1 else f"*{n} {line}" for line, n in part]
                    views = sum(n for _, n in part)
                    self._batches.append((secrets.token_hex(12), views, lines))
                self._held += len(items)
                self._shed()
            sent = 0
            while self._batches:
                token, views, lines = self._batches[0]
                joined = "\n".join(lines)
                if joined.count("\n") >= len(lines):  # a path held a newline
                    joined = "\n".join(line.replace("\n", "%0A") for line in lines)
                await self._append(
                    keys=[keys.HITS_STREAM, keys.hits_batch(token), keys.HITS_WAITING],
                    args=[STREAM_MAXLEN, BATCH_TOKEN_TTL, views, joined, TRIM_STEP],
                )
                self._batches.popleft()
                self._held -= len(lines)
                sent += views
            return sent

    def _shed(self) -> None:
        """Bound the memory a long Redis outage can take: drop the oldest batches (MAX_HELD
        counts lines, which are what takes memory)."""
        while self._held > MAX_HELD and len(self._batches) > 1:
            _, lost, lines = self._batches.popleft()
            self._held -= len(lines)
            self.dropped += lost
            log.error("Redis unreachable: dropped %d page views (%d in all)", lost, self.dropped)

    async def run(self) -> None:
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
                await asyncio.sleep(1)  # the buffer keeps growing; do not spin on a dead Redis
            else:
                if failing:
                    log.info("page views reach Redis again")
                failing = False

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self.run(), name="bantin-hits-flusher")

    async def close(self) -> None:
        """Stop the flusher, then send everything left (a few attempts: Redis may blink).

        The flusher is asked to stop, not cancelled: a cancellation can be swallowed inside its
        loop (by the Redis client's error handling, or by asyncio.timeout expiring at the same
        moment on Python 3.11), and the flusher then waited for ever, still marked cancelling
        (seen in the test suite). It is cancelled only if it does not stop within CLOSE_WAIT
        seconds (a Redis call stuck past its socket timeout)."""
        if self._task is not None:
            self._closing = True
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_WAIT)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.error("the page-view flusher had stopped", exc_info=self._task.exception())
            self._task = None
        for attempt in range(3):
            try:
                await self.flush()
                return
            except (RedisError, OSError) as err:
                log.warning("final flush of page views failed (%s), attempt %d", err, attempt + 1)
                await asyncio.sleep(0.5)
        log.error("shutting down with %d page views not sent", self.waiting)


hits_key = web.AppKey("hits", HitRecorder)


async def recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: start the flusher with the app, flush the rest on shutdown.
    Append it after the clients' context, so that Redis is still open when it exits."""
    recorder = HitRecorder(app[redis_key], app[settings_key])
    recorder.key = await visitor_key(app[pool_key])
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


def _prefetch(headers: Any) -> bool:
    purpose = headers.get("Sec-Purpose") or headers.get("Purpose") or ""
    return "prefetch" in purpose.lower()


async def today(redis: Redis, zone: ZoneInfo) -> tuple[int, int]:
    """(views, unique visitors) of today in the site's time zone."""
    day = datetime.now(zone).date().isoformat()
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.day_views(day))
    pipe.pfcount(keys.day_visitors(day))
    views, visitors = await pipe.execute()
    return int(views or 0), int(visitors or 0)


async def stream_lag(redis: Redis) -> int:
    """Views in the stream not counted yet (for /metrics): the counter the publishers raise as
    they append and the counters worker lowers as it counts (entries of an earlier format, one
    view each, are not in it). No XINFO lag needed (Redis 6.2 has none)."""
    return max(0, int(await redis.get(keys.HITS_WAITING) or 0))
