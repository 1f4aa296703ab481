"""The readers' site: an aiohttp application built by `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import jinja2
from aiohttp import web

from services.publisher import views
from services.publisher.cache import PageCache
from services.publisher.routes import setup_routes
from shared.problems import problem_middleware
from shared.settings import Settings
from shared.web import install_clients, redis_key

TEMPLATES = Path(__file__).parent / "templates"


def html_errors(request: web.Request, status: int) -> Awaitable[web.StreamResponse] | None:
    if request.path.startswith(("/api/", "/feeds/", "/media/", "/static/")):
        return None
    return views.html_error(request, status)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[problem_middleware(html_errors)])
    install_clients(app, settings)
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
    setup_routes(app, settings)
    return app
