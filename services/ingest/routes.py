from __future__ import annotations

from aiohttp import web

from services.ingest import desk
from services.ingest.openapi import openapi
from services.ingest.views import articles, categories, review, site
from shared.web import add_health_routes


def setup_routes(app: web.Application) -> None:
    add_health_routes(app)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/categories", categories.list_categories)
    app.router.add_post("/api/v1/categories", categories.create_category)
    category = r"/api/v1/categories/{slug:[^/]{1,200}}"
    app.router.add_patch(category, categories.patch_category)
    app.router.add_delete(category, categories.delete_category)
    app.router.add_get("/api/v1/site", site.get_site)
    app.router.add_put("/api/v1/site", site.put_site)
    app.router.add_get("/api/v1/articles", articles.list_articles)
    app.router.add_post("/api/v1/articles", articles.create_article)
    app.router.add_post("/api/v1/articles/batch", articles.create_batch)
    article = r"/api/v1/articles/{id:\d{1,18}}"
    app.router.add_get(article, articles.get_article)
    app.router.add_patch(article, articles.patch_article)
    app.router.add_delete(article, articles.delete_article)
    review.setup(app, article)
    desk.setup(app)
