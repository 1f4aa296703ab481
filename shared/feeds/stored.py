"""Page 1 of every feed as the publisher holds and answers it: the stored bodies (identity,
gzip, brotli) and the headers of each answer, prepared once per version of the feed, and
checked against Redis once they are a second old.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from shared import keys
from shared.prepared import ENCODINGS, accepted_encoding, not_modified
from shared.settings import Settings

log = logging.getLogger(__name__)

FRESH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Prepared:
    """A stored feed, ready to answer: its bodies and the headers of each answer, built once
    per version of the feed rather than once per request."""

    etag: str
    last_modified: str
    bodies: dict[str, bytes]  # "" (identity), "gzip", "br"
    headers: dict[str, CIMultiDictProxy[str]]  # the same keys, for a 200
    not_modified: CIMultiDictProxy[str]  # for a 304

    @classmethod
    def of(cls, stored: dict[bytes, bytes], links: str) -> Prepared:
        etag, last_modified = stored[b"etag"].decode(), stored[b"last_modified"].decode()
        # RFC 9110 section 15.4.5: a 304 carries the fields a cache needs to update what it
        # holds (ETag, Cache-Control, Vary), not the representation's metadata.
        common = {"ETag": etag, "Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"}
        full = {**common, "Last-Modified": last_modified, "Link": links}
        full["Content-Type"] = stored[b"content_type"].decode()
        bodies = {"": stored[b"body"]}
        headers = {"": CIMultiDictProxy(CIMultiDict(full))}
        for name in ENCODINGS:
            if name.encode() in stored:
                bodies[name] = stored[name.encode()]
                headers[name] = CIMultiDictProxy(CIMultiDict({**full, "Content-Encoding": name}))
        return cls(etag, last_modified, bodies, headers, CIMultiDictProxy(CIMultiDict(common)))

    def answer(self, request: web.Request) -> web.Response:
        if not_modified(request, self.etag, self.last_modified):
            return web.Response(status=304, headers=self.not_modified.copy())
        coding = accepted_encoding(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        if coding not in self.bodies:
            coding = ""
        return web.Response(body=self.bodies[coding], headers=self.headers[coding].copy())


class StoredFeeds:
    """Page 1 of every feed, kept in this process and checked against Redis (by ETag alone, a
    few bytes) once it is a second old, so a busy feed costs neither a Redis round trip nor a
    copy of its bodies per request.

    A feed held for less than FRESH_SECONDS is answered from memory (the front door does
    that); an older one is answered only after the check, which every request arriving
    meanwhile awaits too (one round trip, however many requests). So a reader polling after a
    rebuild gets the new version: the rebuild shows at most FRESH_SECONDS after it is stored,
    never one poll later. When Redis cannot be asked, the feed held is served, and checked
    again a second later (not by every request)."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.local: dict[tuple[str, str], tuple[float, Prepared]] = {}
        self.checks: dict[tuple[str, str], asyncio.Task[Prepared | None]] = {}
        self.failing: set[tuple[str, str]] = set()

    def current(self, scope: str, fmt: str) -> Prepared | None:
        """The feed held, while it is fresh; None when it must be checked (`get()`)."""
        held = self.local.get((scope, fmt))
        if held is None or time.monotonic() - held[0] >= FRESH_SECONDS:
            return None
        return held[1]

    async def get(self, scope: str, fmt: str) -> Prepared | None:
        """The feed as stored (None when it is not), checked against Redis if it is not
        fresh; concurrent callers share one check."""
        held = self.current(scope, fmt)
        if held is not None:
            return held
        check = self.checks.get((scope, fmt))
        if check is None:
            check = asyncio.get_running_loop().create_task(self._check(scope, fmt))
            self.checks[(scope, fmt)] = check
            check.add_done_callback(lambda _: self.checks.pop((scope, fmt), None))
        return await asyncio.shield(check)

    async def _check(self, scope: str, fmt: str) -> Prepared | None:
        held = self.local.get((scope, fmt))
        try:
            prepared = await self._fetch(scope, fmt, held[1] if held else None)
        except Exception as err:
            if held is None:
                raise
            if (scope, fmt) not in self.failing:  # once per outage, not every second
                log.warning("cannot check the stored feed %s.%s: %s", scope, fmt, err)
                self.failing.add((scope, fmt))
            # Served as held; checked again in a second, not by every request meanwhile.
            self.local[(scope, fmt)] = (time.monotonic(), held[1])
            return held[1]
        if (scope, fmt) in self.failing:
            self.failing.discard((scope, fmt))
            log.info("the stored feed %s.%s can be checked again", scope, fmt)
        return prepared

    async def _fetch(self, scope: str, fmt: str, held: Prepared | None) -> Prepared | None:
        now = time.monotonic()
        key = keys.feed(scope, fmt)
        if held is not None and await self.redis.hget(key, "etag") == held.etag.encode():
            self.local[(scope, fmt)] = (now, held)
            return held
        stored = cast(dict[bytes, bytes], await self.redis.hgetall(key))
        if not stored:
            self.local.pop((scope, fmt), None)
            return None
        prepared = Prepared.of(stored, self.links(scope, fmt))
        self.local[(scope, fmt)] = (now, prepared)
        return prepared

    async def close(self) -> None:
        checks = list(self.checks.values())
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)

    def links(self, scope: str, fmt: str) -> str:
        """The Link header: the feed itself, and the WebSub hub (WebSub section 4)."""
        links = [f'<{self.settings.site_url()}/feeds/{scope}.{fmt}>; rel="self"']
        if self.settings.websub_hub:
            links.insert(0, f'<{self.settings.websub_hub}>; rel="hub"')
        return ", ".join(links)
