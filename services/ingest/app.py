"""The submitters' API: an aiohttp application built by `create_app(settings)`."""

from __future__ import annotations

from aiohttp import web

from services.ingest.routes import setup_routes
from shared.metrics import ServiceMetrics
from shared.metrics import handler as metrics_handler
from shared.settings import Settings
from shared.web import install_clients, redis_key, service_middleware
from workers.app import configure as configure_celery


def create_app(settings: Settings) -> web.Application:
    # JSON bodies are read whole (and capped here); photo uploads stream part by part.
    metrics = ServiceMetrics("ingest")
    app = web.Application(
        client_max_size=settings.max_json_bytes,
        middlewares=[service_middleware(metrics)],
    )
    app.router.add_get("/metrics", metrics_handler(metrics, redis_key))
    install_clients(app, settings)
    configure_celery(settings)  # ingest only sends tasks; nothing connects until it does
    setup_routes(app)
    return app
