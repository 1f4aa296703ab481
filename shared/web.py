"""What both aiohttp services share: typed app keys, client lifecycles, health checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from shared import db
from shared.settings import Settings

settings_key = web.AppKey("settings", Settings)
pool_key = web.AppKey("pool", AsyncConnectionPool)  # holds a db.AsyncPool
redis_key = web.AppKey("redis", Redis)


def install_clients(app: web.Application, settings: Settings, *, pool_size: int = 10) -> None:
    """Open the database pool and the Redis client with the app, close them with it."""
    app[settings_key] = settings
    database_url, redis_url = settings.require_backends()

    async def clients(app: web.Application) -> AsyncIterator[None]:
        pool = db.async_pool(database_url, max_size=pool_size)
        await pool.open(wait=True, timeout=30)
        redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        app[pool_key] = pool
        app[redis_key] = redis
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app.cleanup_ctx.append(clients)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Cheap enough for a health check every second."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: PostgreSQL and Redis both answer."""
    problems = {}
    try:
        async with request.app[pool_key].connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception as err:
        problems["postgresql"] = type(err).__name__
    try:
        await request.app[redis_key].ping()
    except Exception as err:
        problems["redis"] = type(err).__name__
    status = 503 if problems else 200
    return web.json_response(
        {"status": "unavailable" if problems else "ok", **problems}, status=status
    )


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
