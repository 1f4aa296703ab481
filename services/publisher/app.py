"""The readers' site: an aiohttp application built by `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import jinja2
from aiohttp import web

from services.publisher import feeds, front, redirects, views
from services.publisher.cache import PageCache
from services.publisher.routes import setup_routes
from shared.counting.record import Statistics, hits_key, recorder_ctx, statistics_key
from shared.metrics import ServiceMetrics
from shared.metrics import handler as metrics_handler
from shared.settings import Settings
from shared.web import install_clients, redis_key, server_hook_key, service_middleware

TEMPLATES = Path(__file__).parent / "templates"


def html_errors(request: web.Request, status: int) -> Awaitable[web.StreamResponse] | None:
    if request.path.startswith(("/api/", "/feeds/", "/media/", "/static/")):
        return None
    return views.html_error(request, status)


def create_app(settings: Settings) -> web.Application:
    metrics = ServiceMetrics("publisher")
    app = web.Application(
        middlewares=[service_middleware(metrics, html_errors), redirects.middleware]
    )
    install_clients(app, settings)
    metrics.gauge(
        "bantin_page_cache_hit_ratio",
        "Pages answered from the cache, this process",
        lambda: _ratio(app[views.cache_key]) if views.cache_key in app else 0.0,
    )
    metrics.gauge(
        "bantin_page_views_buffered",
        "Page views waiting to be sent to Redis",
        lambda: app[hits_key].waiting if hits_key in app else 0,
    )
    door = app[front.front_key] = front.FrontDoor(metrics.http)
    app[server_hook_key] = door  # bantin's runner installs it (shared.web.run)
    metrics.gauge(
        "bantin_front_door_answers",
        "Requests for cached pages and stored feeds answered before routing, this process",
        lambda: door.answered,
    )
    app.router.add_get("/metrics", metrics_handler(metrics, redis_key))
    app[views.packing_key] = views.Packing()
    app[views.templates_key] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    async def page_cache(app: web.Application) -> AsyncIterator[None]:
        app[views.cache_key] = PageCache(app[redis_key], settings.page_cache_seconds)
        yield

    app.cleanup_ctx.append(page_cache)
    app.cleanup_ctx.append(feeds.stored_feeds_ctx)
    # After the clients: its exit (the final flush of page views) runs while Redis is open.
    app.cleanup_ctx.append(recorder_ctx)
    app[statistics_key] = Statistics()
    setup_routes(app, settings)
    return app


def _ratio(cache: PageCache) -> float:
    served = cache.hits + cache.misses
    return cache.hits / served if served else 0.0
