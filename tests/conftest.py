"""Real servers for the suite: PostgreSQL and Redis (embedded ones started here, or the ones
BANTIN_DATABASE_URL / BANTIN_REDIS_URL name), a real Celery worker process, and the services
built by their own factories on free ports."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from bantin import embedded
from shared import db, tokens
from shared.settings import Settings
from shared.tasks import RENDER_IMAGE, RENDER_REST, RENDITIONS, ROUTES

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "http://bantin.test"
ADMIN_TOKEN = "bt_test-admin-token-0123456789abcdef"


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of PostgreSQL and Redis: the environment's, or embedded ones started for the run."""
    given_db, given_redis = (
        os.environ.get("BANTIN_DATABASE_URL"),
        os.environ.get("BANTIN_REDIS_URL"),
    )
    home = tmp_path_factory.mktemp("backends")
    started: list[subprocess.Popen[bytes]] = []
    if not given_db:
        pg = embedded.EmbeddedPostgres(home)
        started.append(pg.start())
        given_db = pg.url
    if not given_redis:
        r = embedded.EmbeddedRedis(home)
        started.append(r.start())
        given_redis = r.url
    db.migrate(given_db)
    yield {"database_url": given_db, "redis_url": given_redis}
    for proc in reversed(started):
        proc.send_signal(signal.SIGINT if "postgres" in str(proc.args) else signal.SIGTERM)
        proc.wait(timeout=30)


class Hub:
    """A small WebSub hub: records every publish ping it receives."""

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hub.pings.append(urllib.parse.parse_qs(self.rfile.read(length).decode()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def urls(self) -> set[str]:
        return {url for ping in self.pings for url in ping.get("hub.url", [])}


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    running = Hub()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture(scope="session")
def base_env(
    backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory, hub: Hub
) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    return {
        "BANTIN_HOME": str(home),
        "BANTIN_DATABASE_URL": backends["database_url"],
        "BANTIN_REDIS_URL": backends["redis_url"],
        "BANTIN_PUBLIC_URL": PUBLIC_URL,
        "BANTIN_ADMIN_TOKEN": ADMIN_TOKEN,
        "BANTIN_LOG_LEVEL": "INFO",
        "BANTIN_WEBSUB_HUB": hub.url,
        "BANTIN_FEED_SIZE": "100",  # the burst test publishes 100 articles
    }


@pytest.fixture(scope="session")
def settings(base_env: dict[str, str]) -> Settings:
    return Settings.from_env(base_env)


def reset(settings: Settings) -> None:
    """Empty every table and this run's Redis database: each test starts from nothing."""
    database_url, redis_url = settings.require_backends()
    wait_for_photos(redis_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    shutil.rmtree(settings.media_dir, ignore_errors=True)
    client = redis_lib.Redis.from_url(redis_url)
    # Only bantin's own keys: FLUSHDB would also drop kombu's queue bindings, after which the
    # broker silently discards every task sent to the worker that is already running.
    stale = list(client.scan_iter(match="bantin:*", count=1000))
    if stale:
        client.delete(*stale)
    client.close()


PHOTO_QUEUES = (ROUTES[RENDER_IMAGE], ROUTES[RENDER_REST])


def wait_for_photos(redis_url: str, timeout: float = 180) -> None:
    """Photos render in two stages (workers/photos.py): the second may still be running for
    the previous test's articles when the next test starts. Let the worker finish it first, or
    its files land in the next test's media folder and its work delays the next test's."""
    client = redis_lib.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # Kombu's Redis transport: a queue is a list; a message taken but not yet
            # acknowledged (acks_late) is in the "unacked" hash as [message, exchange, queue].
            waiting = any(client.llen(queue) for queue in PHOTO_QUEUES) or any(
                json.loads(value)[2] in PHOTO_QUEUES for value in client.hvals("unacked")
            )
            if not waiting:
                return
            time.sleep(0.1)
    finally:
        client.close()


@pytest.fixture
def clean(settings: Settings) -> Settings:
    reset(settings)
    return settings


# The workers as `bantin up` and docker-compose.yml run them: one for every queue but the
# renditions, and one of the renditions' own (shared/tasks.py).
WORKERS = {
    "worker": ["--concurrency", "2", "--exclude-queues", RENDITIONS],
    "renditions": ["--queues", RENDITIONS, "--concurrency", "1", "--nice", "5"],
}


@pytest.fixture(scope="session")
def worker(base_env: dict[str, str], settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """Real Celery worker processes, as `bantin worker` runs them in production; the one of
    every queue but the renditions is yielded (the renditions' own runs beside it)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    for name, args in WORKERS.items():
        logs[name] = Path(base_env["BANTIN_HOME"]) / f"{name}.log"
        with logs[name].open("ab") as out:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "bantin.cli", "worker", *args],
                env={**os.environ, **base_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    from workers.app import app, configure

    configure(settings)
    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5) or []) < len(procs):
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {logs[name].read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the workers did not answer a ping in 60 s"
    yield procs["worker"]
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass  # a render still running: killed below, as a crash would
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


async def make_token(settings: Settings, role: str = "submitter", name: str = "test") -> str:
    database_url, _ = settings.require_backends()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await tokens.create(conn, name, role)


@pytest.fixture
async def api(aiohttp_client: Any, clean: Settings) -> AsyncIterator[Any]:
    from services.ingest.app import create_app

    yield await aiohttp_client(create_app(clean))


QUIET_DB = 15  # a Redis database no worker listens to


@pytest.fixture
async def quiet_ingest(aiohttp_client: Any, clean: Settings) -> Any:
    """The ingest service (API and desk) of a site whose tasks no worker takes: its Redis is
    another database than the one the session's worker (started by other tests) listens to.
    A submission then stays as ingest wrote it for as long as the test looks, the tasks it
    sent wait in that database's queues, and the test plays the worker itself where it needs
    one."""
    import dataclasses

    from yarl import URL

    from services.ingest.app import create_app

    redis_url = str(URL(clean.redis_url or "").with_path(f"/{QUIET_DB}"))
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()  # this database is the quiet site's alone
    client.close()
    return await aiohttp_client(create_app(dataclasses.replace(clean, redis_url=redis_url)))


async def publisher(serve: Any, settings: Settings) -> Any:
    """The publisher as `bantin publisher` runs it: its app served by aiohttp's test client or
    server (`serve`: aiohttp_client or aiohttp_server), with the front door installed on the
    server (shared.web.run does that in production), so that tests exercise both the door
    and the application behind it."""
    from services.publisher.app import create_app
    from shared.web import server_hook_key

    app = create_app(settings)
    served = await serve(app)
    server = served.server if hasattr(served, "server") else served
    app[server_hook_key].install(server.runner.server)
    return served


@pytest.fixture
async def site(aiohttp_client: Any, clean: Settings) -> AsyncIterator[Any]:
    yield await publisher(aiohttp_client, clean)


@pytest.fixture
async def admin(clean: Settings) -> str:
    return await make_token(clean, "admin", "test admin")


@pytest.fixture
async def submitter(clean: Settings) -> str:
    return await make_token(clean, "submitter", "test submitter")
