"""The submitters' API: an aiohttp application built by `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.ingest.routes import setup_routes
from services.ingest.views.common import tasks_key
from shared.metrics import ServiceMetrics
from shared.metrics import handler as metrics_handler
from shared.settings import Settings
from shared.tasks import TaskSender
from shared.web import install_clients, redis_key, service_middleware


def create_app(settings: Settings) -> web.Application:
    # JSON bodies are read whole (and capped here); photo uploads stream part by part.
    metrics = ServiceMetrics("ingest")
    app = web.Application(
        client_max_size=settings.max_json_bytes,
        middlewares=[service_middleware(metrics)],
    )
    app.router.add_get("/metrics", metrics_handler(metrics, redis_key))
    install_clients(app, settings)
    _, redis_url = settings.require_backends()

    async def tasks(app: web.Application) -> AsyncIterator[None]:
        # Ingest only sends tasks, by name; nothing connects until the first send.
        app[tasks_key] = TaskSender(redis_url, timeout=settings.dependency_timeout)
        yield
        app[tasks_key].close()

    app.cleanup_ctx.append(tasks)
    setup_routes(app)
    return app
