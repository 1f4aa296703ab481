"""A backing service away is a 503 with Retry-After, not a 500: what readers and submitters get
while PostgreSQL or Redis restarts (tests/compose/test_stack.py restarts them in the stack)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from redis.asyncio import Redis

from bantin.bootstrap import demo_seed, text_only
from bantin.embedded import free_port
from shared.metrics import ServiceMetrics
from shared.settings import Settings
from shared.web import service_middleware
from tests.fixtures.moving import query


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


# --- the broker away, after the write ---------------------------------------------------------


@pytest.mark.parametrize("broker", ["refusing", "silent"])
async def test_submissions_are_accepted_while_the_broker_is_away(
    aiohttp_client: Any,
    clean: Settings,
    admin: str,
    caplog: pytest.LogCaptureFixture,
    broker: str,
) -> None:
    """Redis answers (the rate limits) but the tasks cannot be sent: the broker is away
    (refusing connections, as while it restarts) or does not answer (paused). An article and
    a batch are written and answered as accepted, quickly: the article stays `processing` for
    the sweep to send once the broker is back, the batch's articles are published (or
    scheduled) and the sweep refreshes the pages and feeds its lost site_changed left stale.
    An article's answer waits for the broker at most the timeout; a batch's, the client's two
    tries of the timeout (its first failed send ends its sending). Never a 500."""
    from services.ingest.app import create_app
    from services.ingest.views.common import tasks_key
    from shared.tasks import PROCESS_ARTICLE, PUBLISH_ARTICLE, SITE_CHANGED, TaskSender
    from shared.web import settings_key

    away = socket.socket()
    if broker == "silent":  # connections are taken by the kernel, then nothing answers
        away.bind(("127.0.0.1", 0))
        away.listen(64)
        port = away.getsockname()[1]
    else:
        port = free_port()  # nothing listens there
    app = create_app(clean)

    async def broker_away(app: web.Application) -> None:
        app[tasks_key].close()
        unreachable = f"redis://127.0.0.1:{port}/0"
        app[tasks_key] = TaskSender(unreachable, timeout=app[settings_key].dependency_timeout)

    app.on_startup.append(broker_away)  # after the app's own, which made the real sender
    api = await aiohttp_client(app)
    headers = {"Authorization": f"Bearer {admin}"}
    seed = demo_seed()
    response = await api.post("/api/v1/categories", json=seed["category"], headers=headers)
    assert response.status == 201, await response.text()
    good = text_only(seed["article"])
    # Dated a minute ahead: each is sent to the workers at once for its exact time (20 sends).
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    ahead = {**good, "title": "Bài hẹn giờ", "published_at": soon}
    items = [good, {**good, "title": "Bài hai"}] + [ahead] * 20
    took = []
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="shared.tasks"):
            started = time.monotonic()
            one = await api.post("/api/v1/articles", json=good, headers=headers)
            took.append(time.monotonic() - started)
            assert one.status == 202, await one.text()
            started = time.monotonic()
            batch = await api.post(
                "/api/v1/articles/batch", json={"articles": items}, headers=headers
            )
            took.append(time.monotonic() - started)
            assert batch.status == 200, await batch.text()
    finally:
        away.close()  # what the sender's thread still tries is refused from now on
    results = (await batch.json())["results"]
    ids = [(await one.json())["id"], *(r["id"] for r in results)]
    statuses = ["published"] * 2 + ["scheduled"] * 20
    assert [r["status"] for r in results] == statuses
    rows = query(clean, "SELECT id, status FROM articles WHERE id = ANY(%s) ORDER BY id", ids)
    assert [r["status"] for r in rows] == ["processing", *statuses]
    bound = clean.dependency_timeout
    assert took[0] < bound + 2 and took[1] < 2 * bound + 2, took
    warned = [r.getMessage() for r in caplog.records if "the sweep will retry" in r.getMessage()]
    for told in (
        f"1 {PROCESS_ARTICLE} (from {[ids[0]]}",
        f"1 {SITE_CHANGED} (from {[[seed['category']['slug']]]}",
    ):
        assert any(told in message for message in warned), (told, warned)
    # The batch's first failed send ended its sending: its 20 publications at their time were
    # left to the sweep (it sends the scheduled articles due within its window).
    assert not any(PUBLISH_ARTICLE in message for message in warned), warned
