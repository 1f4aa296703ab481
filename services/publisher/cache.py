"""Rendered pages, shared by every publisher replica through Redis, with a small in-process
layer in front.

Cached pages are keyed by the site version, which every publication, edit or removal
increments: one INCR makes every page stale at once, and stale entries simply expire. Each
answer needs one Redis round trip for the version and the live statistics.

While Redis is away (restarting, paused), the pages this process holds are still served, with
the last statistics it knew: Redis is asked again about once a second, in the background, and
pages rendered meanwhile are kept in this process only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from shared import keys
from shared.counting.count import ask_shown
from shared.prepared import Head, fixed_head
from shared.web import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)

HTML_TYPE = "text/html; charset=utf-8"
LIVE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Live:
    version: int
    online: int
    total: int


@dataclass(frozen=True, slots=True)
class Ready:
    """A page's answer, ready to send while `live` holds."""

    live: Live
    data: bytes
    etag: str
    head: Head  # the header lines of every answer
    # Compressed forms ("br", "gzip"): their bodies and heads (made once, not per request).
    packed: Mapping[str, tuple[Head, bytes]] = field(default_factory=dict)


class PageCache:
    def __init__(self, redis: Redis, ttl: int, local_size: int = 512) -> None:
        self.redis = redis
        self.ttl = ttl
        self.local_size = local_size
        self.local: OrderedDict[str, bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._live: Live | None = None
        self._live_at = 0.0
        self._refresh: asyncio.Future[Live] | None = None
        self._ready: OrderedDict[str, Ready] = OrderedDict()
        self.away = False  # Redis did not answer the last refresh

    async def live(self, *, fresh: bool = False) -> Live:
        """The site version and statistics, shared by this process's requests for up to
        LIVE_SECONDS: one Redis round trip a second instead of one per request. A publication
        shows within that second, and the statistics are never older than that, unless Redis
        is away: then the last snapshot, while one refresh a second runs in the background."""
        if fresh:
            return await self._fetch_live()
        now = time.monotonic()
        if self._live is not None and now - self._live_at < LIVE_SECONDS:
            return self._live
        if self._refresh is None:
            self._refresh = refresh = asyncio.ensure_future(self._fetch_live())
            refresh.add_done_callback(self._refreshed)
        if self.away and self._live is not None:
            return self._live
        try:
            return await asyncio.shield(self._refresh)
        except DEPENDENCY_ERRORS:
            if self._live is None:
                raise  # nothing known yet: the request is answered 503
            return self._live

    def _refreshed(self, refresh: asyncio.Future[Live]) -> None:
        if self._refresh is refresh:
            self._refresh = None
        err = None if refresh.cancelled() else refresh.exception()
        if err is None:
            if self.away:
                log.info("Redis answers again; pages are current")
            self.away = False
        elif isinstance(err, DEPENDENCY_ERRORS):
            if not self.away:
                log.warning("Redis is away (%s); serving the pages held here", err)
            self.away = True
            self._live_at = time.monotonic()  # the next try in a second
        else:
            log.error("refreshing the site version failed", exc_info=err)

    async def _fetch_live(self) -> Live:
        """One round trip for the site version and the statistics. When Redis does not answer
        it raises; `live()` then keeps the last snapshot (pages keep their statistics block)
        and `_refreshed` marks Redis away, to be asked again a second later."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.SITE_VERSION)
        ask_shown(pipe)
        version, online, total = await pipe.execute()
        self._live = Live(int(version or 0), int(online or 0), int(total or 0))
        self._live_at = time.monotonic()
        return self._live

    def current(self) -> Live | None:
        """The snapshot `live()` would return without waiting, or None when it is due for a
        refresh: the common case costs no coroutine."""
        if self._live is not None and time.monotonic() - self._live_at < LIVE_SECONDS:
            return self._live
        return None

    def ready(self, key: str, live: Live) -> Ready | None:
        """The answer prepared for page `key` at this snapshot (site version and statistics),
        if this process has one: the page's bytes with the statistics written in, its ETag and
        headers. Made once per page and snapshot (at most once a second), it turns a cached
        page's answer into a dictionary lookup."""
        held = self._ready.get(key)
        if held is not None and (held.live is live or held.live == live):
            self.hits += 1
            return held
        return None

    def last(self, key: str) -> Ready | None:
        """The answer last prepared for page `key`, whatever the site version since: what a
        reader gets while the page cannot be rendered (PostgreSQL or Redis away)."""
        return self._ready.get(key)

    def prepare(
        self, key: str, live: Live, data: bytes, etag: str, packed: Mapping[str, bytes] = {}
    ) -> Ready:
        headers = {"Content-Type": HTML_TYPE, "Cache-Control": "no-cache", "ETag": etag}
        if packed:
            headers["Vary"] = "Accept-Encoding"
        heads = {
            name: (fixed_head({**headers, "Content-Encoding": name}, body), body)
            for name, body in packed.items()
        }
        held = Ready(live, data, etag, fixed_head(headers, data), heads)
        if not self.ttl:
            return held  # the page cache is off: every answer renders
        self._ready[key] = held
        self._ready.move_to_end(key)
        while len(self._ready) > self.local_size:
            self._ready.popitem(last=False)
        return held

    async def get(self, version: int, path: str) -> bytes | None:
        key = keys.page(version, path)
        body: bytes | None = self.local.get(key)
        if body is None and self.ttl and not self.away:
            try:
                stored = await self.redis.get(key)
            except DEPENDENCY_ERRORS:
                stored = None  # rendered here instead, if PostgreSQL answers
            if isinstance(stored, bytes):
                body = stored
                self._remember(key, body)
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
            self.local.move_to_end(key)
        return body

    async def put(self, version: int, path: str, body: bytes) -> None:
        if not self.ttl:
            return
        key = keys.page(version, path)
        self._remember(key, body)
        if self.away:
            return
        try:
            await self.redis.set(key, body, ex=self.ttl)
        except DEPENDENCY_ERRORS as err:  # held here; other replicas render their own
            log.info("page %s not shared: %s", path, err)

    def _remember(self, key: str, body: bytes) -> None:
        self.local[key] = body
        while len(self.local) > self.local_size:
            self.local.popitem(last=False)
