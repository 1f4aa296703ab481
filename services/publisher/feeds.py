"""Feeds for readers: stored bytes with conditional GET and pre-compressed variants.

Page 1 of every feed is rendered by a worker when something changes and stored in Redis with
its gzip and brotli forms; the publisher holds it (shared.feeds.stored), so serving it is a
lookup and a write to the socket. Older pages (RFC 5005 paged feeds), and page 1 before its
first rebuild, are rendered on demand in a thread and kept until the site changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from typing import cast

from aiohttp import web

from services.publisher import front
from services.publisher.cache import PageCache
from services.publisher.views import page_number, retired_answer
from shared import keys
from shared.feeds import build as feeds
from shared.feeds.formats import FORMATS
from shared.feeds.stored import Prepared, StoredFeeds
from shared.web import pool_key, redis_key, settings_key

stored_key = web.AppKey("stored_feeds", StoredFeeds)


async def stored_feeds_ctx(app: web.Application) -> AsyncIterator[None]:
    app[stored_key] = StoredFeeds(app[redis_key], app[settings_key])
    try:
        yield
    finally:
        await app[stored_key].close()


async def feed(request: web.Request, cache_key: web.AppKey[PageCache]) -> web.StreamResponse:
    scope, fmt = request.match_info["scope"], request.match_info["fmt"]
    feeds_held = request.app[stored_key]
    quick = partial(_quick_feed, feeds_held, scope, fmt)
    if not request.query_string:  # page 1, the one readers poll
        held = quick(request)
        if held is not None:
            front.remember(request, quick)
            return held
    if fmt not in FORMATS:
        raise web.HTTPNotFound(text=f"Feeds come as {', '.join(FORMATS)}.")
    page = page_number(request, feeds.MAX_PAGE)
    prepared = await feeds_held.get(scope, fmt) if page == 1 else None
    if prepared is not None:
        front.remember(request, quick)
    else:
        # An older page (RFC 5005), or page 1 before its first rebuild (a new site, Redis
        # emptied): rendered from PostgreSQL now; the sweep stores page 1 soon after.
        try:
            stored = await _rendered_page(request, cache_key, scope, fmt, page)
        except feeds.RetiredScope as gone:
            to = gone.redirect_to
            return await retired_answer(request, f"/feeds/{to}.{fmt}" if to else None)
        prepared = Prepared.of(stored, feeds_held.links(scope, fmt))
    return prepared.answer(request)


def _quick_feed(
    held: StoredFeeds, scope: str, fmt: str, request: web.Request
) -> web.Response | None:
    """The front door's answer for page 1 of a feed (see front.py): the feed held, if any."""
    prepared = held.current(scope, fmt)
    return prepared.answer(request) if prepared is not None else None


async def _rendered_page(
    request: web.Request, cache_key: web.AppKey[PageCache], scope: str, fmt: str, page: int
) -> dict[bytes, bytes]:
    redis = request.app[redis_key]
    live = await request.app[cache_key].live()
    key = keys.feed_page(live.version, scope, fmt, page)
    stored = cast(dict[bytes, bytes], await redis.hgetall(key))
    if stored:
        return stored
    settings = request.app[settings_key]
    async with request.app[pool_key].connection() as conn:
        try:
            category, latest, more = await feeds.load(conn, settings, scope, page)
        except feeds.RetiredScope:
            raise  # answered by feed()
        except feeds.UnknownScope as err:
            raise web.HTTPNotFound(text=f"There is no category {scope!r}.") from err
    if not latest and page > 1:
        raise web.HTTPNotFound(text=f"This feed has no page {page}.")
    # feedgen is CPU work: keep it off the event loop.
    rendered = await asyncio.to_thread(
        feeds.render, settings, scope, fmt, category, latest, page, more
    )
    mapping = {
        k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in rendered.mapping().items()
    }
    pipe = redis.pipeline(transaction=False)
    pipe.hset(key, mapping=rendered.mapping())  # type: ignore[arg-type]
    pipe.expire(key, settings.page_cache_seconds or 60)
    await pipe.execute()
    return mapping
