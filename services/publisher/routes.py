from __future__ import annotations

from functools import partial
from pathlib import Path

from aiohttp import web

from services.publisher import feeds, media, sitemap, views
from shared.settings import Settings
from shared.web import add_health_routes

STATIC = Path(__file__).parent / "static"


def setup_routes(app: web.Application, settings: Settings) -> None:
    add_health_routes(app)
    # aiohttp tries the patterns under "/" in the order they were added: articles, the pages
    # read most, first. No other route's addresses match this pattern.
    app.router.add_get(r"/{category:[a-z0-9-]+}/{tail:[a-z0-9-]*-\d+}", views.article_page)
    app.router.add_get("/api/v1/stats", views.stats)
    app.router.add_get(
        r"/feeds/{scope:[a-z0-9-]+}.{fmt:[a-z]+}", partial(feeds.feed, cache_key=views.cache_key)
    )
    app.router.add_get("/search", views.search)
    app.router.add_get("/robots.txt", sitemap.robots)
    app.router.add_get("/sitemap.xml", sitemap.sitemap)
    app.router.add_get(r"/sitemap-{part:\d+}.xml", sitemap.sitemap_part)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/media/{path:.+}", media.serve)
    app.router.add_get("/", views.home)
    app.router.add_get(r"/{category:[a-z0-9-]+}/", views.category_page)
