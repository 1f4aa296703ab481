"""A backing service away is a 503 with Retry-After, not a 500: what readers and submitters get
while PostgreSQL or Redis restarts (tests/compose/test_stack.py restarts them in the stack)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from redis.asyncio import Redis

from bantin.embedded import free_port
from shared.metrics import ServiceMetrics
from shared.web import service_middleware


async def postgres_away(request: web.Request) -> web.Response:
    port = free_port()  # nothing listens there
    async with await psycopg.AsyncConnection.connect(
        f"postgresql://bantin@127.0.0.1:{port}/bantin", connect_timeout=2
    ):
        return web.Response(text="unreachable")


async def redis_away(request: web.Request) -> web.Response:
    async with Redis(port=free_port(), socket_connect_timeout=2) as client:
        await client.get("x")
    return web.Response(text="unreachable")


@pytest.mark.parametrize("path", ["/postgres", "/redis"])
async def test_a_dependency_away_is_a_503_with_retry_after(aiohttp_client: Any, path: str) -> None:
    metrics = ServiceMetrics("test")
    app = web.Application(middlewares=[service_middleware(metrics)])
    app.router.add_get("/postgres", postgres_away)
    app.router.add_get("/redis", redis_away)
    client = await aiohttp_client(app)
    response = await client.get(path)
    assert response.status == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    body = await response.json()
    assert body["status"] == 503 and "retry in 5 s" in body["detail"]
    text = generate_latest(metrics.registry).decode()
    assert f'route="{path}",status="503"' in text
