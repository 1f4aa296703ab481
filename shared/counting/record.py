"""What the publisher records: one view per HTML page a reader got, and who the reader is.

What counts: a GET of an HTML page answered 200 or 304 (home, category, article, search). Not
feeds, media, static files, health checks or the API, which never call the recorder; not
redirects nor error pages (a reader who missed the page did not read it, and scanners probing
addresses would inflate the count); not HEAD requests nor browser prefetches (nobody saw
those). Known bots are recorded but flagged: the drain counts them apart.

Visitors: a first-party cookie `bantin_vid`. A request without it is identified by a keyed hash
of (client IP, User-Agent), the IP behind trusted reverse proxies being the one they forwarded
(`shared.web.client_address`), and the cookie it receives carries that hash and the day: views on
the day the cookie was given keep counting under the hash, so a new reader's first view and the
next ones are one visitor; from the next day on the cookie's random part identifies the browser
(readers behind one carrier NAT with the same phone are not merged for ever). Clients that keep
no cookies (most bots, scripts) stay one visitor per (IP, User-Agent).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import secrets
import time
from datetime import datetime
from typing import Any

from aiohttp import hdrs, web
from multidict import istr
from redis.asyncio import Redis

from shared.counting.buffer import Buffer
from shared.settings import Settings
from shared.web import client_address

COOKIE = "bantin_vid"
COOKIE_MAX_AGE = 365 * 24 * 3600
MEMO_SIZE = 10_000  # User-Agents and Cookie headers remembered; beyond, forgotten at once
MEMO_HEADER = 512  # longer Cookie headers or User-Agents are not remembered (the client's say)
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


class Reader:
    """A reader as the process remembers it for its Cookie header: who it is, and its last
    view (second, page, article) with that view's line. Updated in place, view after view, so
    that the same page again in the same second (a reload, a script, a load test) reuses the
    line, a string whose hash Python keeps: counting it is one dictionary update."""

    __slots__ = ("agent", "article", "bot", "line", "path", "second", "visitor")
    agent: str
    visitor: str
    bot: str  # "1" or "0"
    second: str
    path: str
    article: int | None
    line: str

    def __init__(self, agent: str, visitor: str, bot: str) -> None:
        self.agent, self.visitor, self.bot = agent, visitor, bot
        self.second, self.path, self.article, self.line = "", "", None, ""


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


class Recorder(Buffer):
    """The request path's side of the buffer: page_view() is all a served page pays."""

    def __init__(self, redis: Redis, settings: Settings, key: bytes = b"") -> None:
        super().__init__(redis)
        # Keyed, so that the stream holds no hash anyone could reverse by trying every IPv4
        # address: a random secret of the site, shared by every replica.
        self.key = key
        self.zone = settings.zone
        self.https = settings.public_url.startswith("https://")
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
        # The current second as the stream writes it, made once a second, and its bounds.
        self._second_text = "0"
        self._second_starts = self._second_ends = 0.0

    def page_view(
        self,
        request: web.Request,
        response: web.StreamResponse,
        article_id: int | None = None,
        path: str | None = None,
    ) -> None:
        """Record one view of an HTML page answered 200; gives the browser its cookie.

        Every page served pays for this, so it is kept to lookups (see Reader). `path` is the
        request's path, given by callers that hold it already."""
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
        reader = self._readers.get(header)
        if reader is None or reader.agent != agent:
            reader = self._reader(request, response, agent, header)
        if path is None:
            path = request.path
        second = self._second_text
        if reader.second is second and reader.article == article_id and reader.path == path:
            line = reader.line
        else:  # View.line(), spelled out: no call on the request path
            line = f"{second} {reader.bot} {article_id or ''} {reader.visitor} {path}"
            reader.second, reader.path, reader.article, reader.line = second, path, article_id, line
        lines = self.lines
        lines[line] = lines.get(line, 0) + 1
        if len(lines) >= self.flush_at:
            self._wake.set()

    def _tick(self, now: float) -> None:
        """A view in another second than the last one (or the clock stepped back). The day is
        looked at once a minute; a new one forgets the readers known by cookie (a cookie given
        yesterday names its browser differently today)."""
        if now >= self._day_ends:
            moment = datetime.fromtimestamp(now, self.zone)
            today = moment.strftime("%Y%m%d")
            if today != self._today:
                self._today = today
                self._readers.clear()
            self._day_ends = now + 60 - moment.second - moment.microsecond / 1e6
        second = int(now)
        self._second_text = str(second)
        self._second_starts, self._second_ends = float(second), second + 1.0

    def _reader(
        self, request: web.Request, response: web.StreamResponse, agent: str, header: str
    ) -> Reader:
        """The reader of a request whose Cookie header is not remembered with this User-Agent,
        remembered from now on when it has our cookie and short headers; gives a new reader its
        cookie."""
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
            reader = Reader(
                agent, "h" + first if day == self._today else "c" + random_part, "01"[bot]
            )
            if len(header) <= MEMO_HEADER and len(agent) <= MEMO_HEADER:
                if len(self._readers) > MEMO_SIZE:
                    self._readers.clear()
                self._readers[header] = reader
            return reader
        # Headers are text as the client sent it: bytes that are not UTF-8 come as surrogates.
        seen = f"{client_address(request, self.proxies)}\n{agent}".encode(
            "utf-8", "surrogateescape"
        )
        digest = hashlib.blake2b(seen, key=self.key, digest_size=8).hexdigest()
        if not bot:
            # Written directly: http.cookies' Morsel machinery costs more than the rest of
            # the recording together, and this value needs no quoting (URL-safe, dots).
            token = base64.urlsafe_b64encode(self._random.randbytes(12)).decode()
            secure = "; Secure" if self.https or request.secure else ""
            response.headers.add(
                "Set-Cookie",
                f"{COOKIE}={token}.{self._today}.{digest}{self._cookie_tail}{secure}",
            )
        return Reader(agent, "h" + digest, "01"[bot])


def _prefetch(headers: Any) -> bool:
    purpose = headers.get("Sec-Purpose") or headers.get("Purpose") or ""
    return "prefetch" in purpose.lower()
