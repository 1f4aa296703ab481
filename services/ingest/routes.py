from __future__ import annotations

from aiohttp import web

from services.ingest import views
from shared.web import add_health_routes


def setup_routes(app: web.Application) -> None:
    add_health_routes(app)
    app.router.add_get("/api/v1/categories", views.list_categories)
    app.router.add_post("/api/v1/categories", views.create_category)
    app.router.add_post("/api/v1/articles", views.create_article)
    app.router.add_get(r"/api/v1/articles/{id:\d+}", views.get_article)
