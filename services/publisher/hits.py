"""The publisher's wiring of page-view counting (shared/counting says how views are counted):
the recorder on the app, started and flushed with it, the site's key for hashing visitors, and
the statistics the site shows, answered from the last known figures while Redis is away."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from psycopg.types.json import Jsonb
from redis.exceptions import RedisError

from shared.counting.count import figures
from shared.counting.record import Recorder
from shared.problems import Problem
from shared.web import pool_key, redis_key, settings_key

log = logging.getLogger(__name__)

FIGURES_WAIT = 1.0  # seconds the statistics wait for Redis before the last known ones answer

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
    """GET /api/v1/stats's figures, the last ones known kept for when Redis is away."""

    def __init__(self) -> None:
        self.last: dict[str, int] | None = None
        self.failing = False

    async def read(self, request: web.Request) -> dict[str, int]:
        try:
            async with asyncio.timeout(FIGURES_WAIT):
                self.last = await figures(request.app[redis_key], request.app[settings_key].zone)
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
