"""What operators rely on: metrics, request ids from a request into its tasks, JSON logs, and
the compose file's roles run as separate processes (two workers, two publishers)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiohttp import web
from prometheus_client.exposition import generate_latest

from bantin.bootstrap import demo_seed, text_only
from bantin.embedded import free_port
from shared.logs import JsonFormatter, RequestIdFilter, request_id
from shared.metrics import ServiceMetrics
from shared.settings import Settings
from shared.tasks import QUEUES
from shared.web import service_middleware
from tests.conftest import ADMIN_TOKEN, reset
from tests.photos import jpeg, multipart
from tests.test_api import bearer, create_category, wait_status
from tests.test_e2e import other_redis_db

ROOT = Path(__file__).resolve().parent.parent
SEED = demo_seed()


async def test_metrics_of_both_services(api: Any, site: Any) -> None:
    await api.get("/api/v1/categories")
    await site.get("/")
    for client, route in ((api, "/api/v1/categories"), (site, "/")):
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
        assert f'bantin_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
        assert "bantin_http_request_duration_seconds_bucket" in text
        for queue in QUEUES:
            assert f'bantin_queue_length{{queue="{queue}"}}' in text
        assert "bantin_hits_stream_lag" in text
    text = await (await site.get("/metrics")).text()
    assert "bantin_page_cache_hit_ratio" in text and "bantin_page_views_buffered" in text


async def test_a_failing_error_page_is_still_a_problem_and_counted(aiohttp_client: Any) -> None:
    """The readers' 404 page needs the database; when rendering it fails, the answer is still
    problem details with a request id, and /metrics still counts it."""
    metrics = ServiceMetrics("test")

    def html_errors(request: web.Request, status: int) -> Any:
        async def page() -> web.StreamResponse:
            raise OSError("database down")

        return page() if status == 404 else None

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="xin chào")

    app = web.Application(middlewares=[service_middleware(metrics, html_errors)])
    app.router.add_get("/", hello)
    client = await aiohttp_client(app)
    response = await client.get("/khong-co")
    assert response.status == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Request-ID"])
    assert (await response.json())["title"] == "Internal error"
    assert (await client.request("PROPFIND", "/")).status == 405
    text = generate_latest(metrics.registry).decode()
    assert 'bantin_http_requests_total{method="GET",route="unmatched",status="500"} 1.0' in text
    assert 'bantin_http_requests_total{method="other",route="unmatched",status="405"} 1.0' in text


async def test_a_client_gone_mid_upload_is_its_doing(
    clean: Settings, submitter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22.14: a client that disconnects in the middle of its upload is logged at INFO,
    without a traceback, and counted as 499 (nginx's "client closed request"), not 500. The
    app runs as `bantin ingest` runs it (aiohttp's test server would cancel the handler
    instead, which production does not)."""
    from services.ingest.app import create_app

    runner = web.AppRunner(create_app(clean), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        head = (
            "POST /api/v1/articles HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {submitter}\r\n"
            "Content-Type: multipart/form-data; boundary=cut\r\n"
            "Content-Length: 1000000\r\n\r\n"
            '--cut\r\nContent-Disposition: form-data; name="article"\r\n\r\n{"title": "'
        )
        caplog.set_level(logging.INFO)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode())
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if any("client went away" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        metrics = await _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await runner.cleanup()
    assert 'method="POST",route="/api/v1/articles",status="499"} 1.0' in metrics, metrics
    assert 'route="/api/v1/articles",status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("client went away" in r.getMessage() for r in caplog.records), [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records
    ]


async def _get(url: str) -> str:
    def fetch_text() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(fetch_text)


async def test_redis_away_is_503_with_retry_after(
    aiohttp_client: Any, clean: Settings, submitter: str
) -> None:
    """A dependency away answers 503 problem details with Retry-After at once, never 500: here
    Redis refuses connections (nothing listens on its port)."""
    from services.ingest.app import create_app

    gone = clean.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    api = await aiohttp_client(create_app(gone))
    response = await api.get("/api/v1/articles/1", headers=bearer(submitter))
    assert response.status == 503, await response.text()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert (await response.json())["title"] == "Service unavailable"
    ready = await api.get("/readyz")
    assert ready.status == 503 and "redis" in await ready.json()


async def test_ready_again_at_once_after_postgresql_cut_every_pooled_connection(
    aiohttp_client: Any, clean: Settings
) -> None:
    """After a PostgreSQL restart, the connections it cut do not fail /readyz one after the
    other (three failed health checks in a row mark a container unhealthy): the first failure
    checks the whole pool, and the answer is 200 while the server answers."""
    from shared.web import pool_key
    from tests.conftest import publisher

    site = await publisher(aiohttp_client, clean)
    # Several connections in the pool: readiness asked many times at once.
    answers = await asyncio.gather(*(site.get("/readyz") for _ in range(6)))
    assert {a.status for a in answers} == {200}
    # This pool's idle connections only (not the suite's worker's): their server processes.
    pids = [conn.info.backend_pid for conn in site.server.app[pool_key]._pool]
    assert len(pids) >= 2, pids
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(4):
        ready = await site.get("/readyz")
        assert ready.status == 200, await ready.text()


async def test_the_site_serves_what_it_holds_while_redis_is_away(
    aiohttp_client: Any, clean: Settings
) -> None:
    """Issue 22.3: with Redis away, a page the publisher holds is still a 200 (with the last
    statistics it knew), a stored feed too."""
    from redis.asyncio import Redis

    from services.publisher import views
    from services.publisher.feeds import stored_key
    from tests.conftest import publisher

    site = await publisher(aiohttp_client, clean)
    assert (await site.get("/")).status == 200
    before = await (await site.get("/")).read()
    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    app = site.server.app
    app[views.cache_key].redis = gone
    app[stored_key].redis = gone
    await asyncio.sleep(1.1)  # the statistics snapshot is due for a refresh
    for _ in range(3):
        response = await site.get("/")
        assert response.status == 200
        assert await response.read() == before
    assert app[views.cache_key].away
    # The statistics answer their last known figures while Redis is away (their own test is
    # in tests/test_counters.py); only figures never known are a 503.
    assert (await site.get("/api/v1/stats")).status == 200
    await gone.aclose()


async def test_a_host_out_of_range_is_a_bad_request(api: Any, submitter: str) -> None:
    """Issue 22.11: an article's links are built from Host; a port out of range is the
    client's error (400), not ours."""
    response = await api.post(
        "/api/v1/articles",
        json={"title": "Host", "category": "khong-co", "body": "<p>x</p>"},
        headers={**bearer(submitter), "Host": "localhost:99999"},
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["type"].endswith("bad-host")


def test_request_histogram_is_cumulative() -> None:
    """The request statistics are kept as plain counts; what /metrics shows must still be a
    Prometheus histogram: cumulative buckets, the +Inf bucket equal to the count, the sum."""
    metrics = ServiceMetrics("test")
    for seconds in (0.0005, 0.001, 0.003, 0.2, 30.0):
        metrics.http.observe("/a", "GET", 200, seconds)
    metrics.http.observe("/a", "POST", 422, 0.002)
    text = generate_latest(metrics.registry).decode()
    assert 'bantin_http_requests_total{method="GET",route="/a",status="200"} 5.0' in text
    assert 'bantin_http_requests_total{method="POST",route="/a",status="422"} 1.0' in text
    buckets = dict(
        re.findall(
            r'bantin_http_request_duration_seconds_bucket\{le="([^"]+)",route="/a"\} (\S+)', text
        )
    )
    assert buckets["0.001"] == "2.0"  # le: 0.001 itself falls in its bucket
    assert buckets["0.0025"] == "3.0" and buckets["0.005"] == "4.0"
    assert buckets["0.25"] == "5.0" and buckets["10.0"] == "5.0" and buckets["+Inf"] == "6.0"
    assert 'bantin_http_request_duration_seconds_count{route="/a"} 6.0' in text
    sums = re.search(r'bantin_http_request_duration_seconds_sum\{route="/a"\} (\S+)', text)
    assert sums is not None and float(sums.group(1)) == pytest.approx(30.2065)


@pytest.mark.usefixtures("worker")
async def test_request_id_follows_the_article_into_the_worker(
    api: Any, admin: str, base_env: dict[str, str]
) -> None:
    await create_category(api, admin)
    rid = "req-" + os.urandom(6).hex()
    article = {**text_only(SEED["article"]), "images": [{"part": "a", "role": "cover"}]}
    response = await api.post(
        "/api/v1/articles",
        data=multipart(article, {"a": jpeg()}),
        headers={**bearer(admin), "X-Request-ID": rid},
    )
    assert response.headers["X-Request-ID"] == rid
    accepted = await response.json()
    await wait_status(api, admin, accepted["id"], "published")
    log = Path(base_env["BANTIN_HOME"]) / "worker.log"
    # The id reached the task the request sent, and the task that task sent.
    wanted = (f"published article {accepted['id']}", "rendered photo")
    for _ in range(100):
        lines = [line for line in log.read_text().splitlines() if rid in line]
        if all(any(w in line for line in lines) for w in wanted):
            break
        await asyncio.sleep(0.05)
    assert all(any(w in line for line in lines) for w in wanted), lines
    generated = await api.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", generated.headers["X-Request-ID"])
    metrics = await (await api.get("/metrics")).text()
    assert re.search(
        r'bantin_tasks\{outcome="succeeded",task="bantin.process_article"\} '
        r"[1-9]",
        metrics,
    ), metrics


def test_json_log_lines() -> None:
    record = logging.LogRecord(
        "bantin.test", logging.INFO, __file__, 1, "xin chào %s", ("Huế",), None
    )
    token = request_id.set("abc123")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    doc = json.loads(JsonFormatter("ingest").format(record))
    assert doc["message"] == "xin chào Huế" and doc["request_id"] == "abc123"
    assert doc["role"] == "ingest" and doc["level"] == "info"
    datetime_part = doc["time"]
    assert datetime_part.endswith("+00:00")


def test_libvips_chatter_only_at_debug(clean: Settings, tmp_path: Path) -> None:
    """A rendered photo leaves no libvips lines in a worker's log at INFO (about 30 before);
    at DEBUG, whoever debugs the renderer gets them."""
    from shared import logs
    from shared.photos.render import render
    from shared.photos.store import MediaStore

    store = MediaStore(tmp_path / "media")
    store.ensure()
    original = tmp_path / "photo.jpg"
    original.write_bytes(jpeg(640, 480))
    counts = {}
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("pyvips").level
    try:
        for level in ("INFO", "DEBUG"):
            logging.getLogger("pyvips").setLevel(logging.NOTSET)
            logs.setup(clean.with_(log_level=level), "worker")
            seen: list[logging.LogRecord] = []
            catcher = logging.Handler()
            catcher.emit = seen.append  # type: ignore[method-assign]
            root.addHandler(catcher)
            render(original, store, max_pixels=50_000_000)
            counts[level] = sum(1 for r in seen if r.name.startswith("pyvips"))
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("pyvips").setLevel(saved[2])
    assert counts["INFO"] == 0 and counts["DEBUG"] > 0, counts


# --- the compose roles as processes --------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*)|:\?[^}]*)?\}")


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} interpolation, from the given environment."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


class Roles:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bantin.cli", *argv],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc, log))
        return proc

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def compose_roles(tmp_path: Path, settings: Settings) -> Iterator[Roles]:
    reset(settings)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    outside = {
        "BANTIN_DATABASE_URL": settings.database_url or "",
        # Another Redis database than the suite's own worker, so neither takes the other's tasks.
        "BANTIN_REDIS_URL": other_redis_db(settings.redis_url or ""),
        "POSTGRES_PASSWORD": "unused-by-the-test",
        "BANTIN_PUBLIC_URL": "http://bantin.test",
        "BANTIN_ADMIN_TOKEN": ADMIN_TOKEN,
        "BANTIN_LOG_FORMAT": "text",
    }
    environment = {k: substitute(str(v), outside) for k, v in compose["x-bantin-env"].items()}
    environment.update(
        BANTIN_HOME=str(tmp_path / "home"), BANTIN_MEDIA_DIR=str(tmp_path / "media")
    )  # the shared volume
    roles = Roles(tmp_path, {**os.environ, **environment})
    roles.compose = compose  # type: ignore[attr-defined]
    import redis as redis_lib

    r = redis_lib.Redis.from_url(environment["BANTIN_REDIS_URL"])
    for key in r.scan_iter(match="bantin:*"):
        r.delete(key)
    r.close()
    try:
        yield roles
    finally:
        roles.stop()


def command(compose: dict[str, Any], service: str, env: dict[str, str]) -> list[str]:
    return [substitute(str(part), env) for part in compose["services"][service]["command"]]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def fetch(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 test", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_compose_roles_scale_as_processes(compose_roles: Roles) -> None:
    compose: dict[str, Any] = compose_roles.compose  # type: ignore[attr-defined]
    env = compose_roles.env
    migrate = compose_roles.start("migrate", command(compose, "migrate", env))
    assert migrate.wait(60) == 0
    for n in (1, 2):
        compose_roles.start(f"worker{n}", command(compose, "worker", env))
    compose_roles.start("beat", command(compose, "beat", env))

    def serve(service: str, name: str) -> str:
        argv = command(compose, service, env)
        port = free_port()
        argv[argv.index("--port") + 1] = str(port)  # separate containers; one machine here
        proc = compose_roles.start(name, [*argv, "--host", "127.0.0.1"])
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", proc, compose_roles.home / f"{name}.log")
        return url

    api = serve("ingest", "ingest")
    sites = [serve("publisher", "publisher1"), serve("publisher", "publisher2")]

    def call(method: str, path: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(
            api + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)

    from bantin import bootstrap

    bootstrap.prepare(Settings.from_env(env), demo=False)
    assert call("POST", "/api/v1/categories", SEED["category"])[0] == 201
    accepted = [
        call("POST", "/api/v1/articles", {**text_only(SEED["article"]), "title": f"Tin số {n}"})[1]
        for n in range(12)
    ]
    deadline = time.monotonic() + 60
    for item in accepted:
        while True:
            req = urllib.request.Request(
                item["links"]["self"], headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            with urllib.request.urlopen(req, timeout=10) as response:
                if json.load(response)["status"] == "published":
                    break
            assert time.monotonic() < deadline, "articles were not published in 60 s"
            time.sleep(0.1)

    # Both workers took work.
    for n in (1, 2):
        log = (compose_roles.home / f"worker{n}.log").read_text()
        assert "bantin.process_article" in log and "succeeded" in log, f"worker{n} idle"

    # Both publishers serve the same pages ...
    path = accepted[0]["links"]["page"].removeprefix("http://bantin.test")
    pages = [fetch(site + path) for site in sites]
    assert pages[0][0] == pages[1][0] == 200
    assert all("Tin số 0".encode() in body for _, body in pages)
    # ... and the same counts: views on either count once, for both. Six more readers (no
    # cookie: a visitor is then the pair client address and User-Agent) on top of the first.
    for n in range(6):
        fetch(sites[n % 2] + path, **{"User-Agent": f"Mozilla/5.0 reader {n}"})
    deadline = time.monotonic() + 30
    while True:
        stats = [json.loads(fetch(site + "/api/v1/stats")[1]) for site in sites]
        if stats[0]["total"] == stats[1]["total"] == 8:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)
    assert stats[0]["online"] == stats[1]["online"] == 7


def test_only_one_beat_runs(tmp_path: Path, base_env: dict[str, str]) -> None:
    """A second beat stands by while the first holds the schedule, and takes over when it
    stops: periodic tasks are never sent twice."""
    env = {
        **os.environ,
        **base_env,
        "BANTIN_HOME": str(tmp_path),
        "BANTIN_REDIS_URL": other_redis_db(base_env["BANTIN_REDIS_URL"]),
    }
    import redis as redis_lib

    from shared import keys

    r = redis_lib.Redis.from_url(env["BANTIN_REDIS_URL"])
    r.delete(keys.BEAT_LOCK)
    roles = Roles(tmp_path, env)
    try:
        first = roles.start("beat1", ["beat"])
        until_logged(tmp_path / "beat1.log", "this beat holds the schedule", first)
        second = roles.start("beat2", ["beat"])
        until_logged(tmp_path / "beat2.log", "standing by", second)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        until_logged(tmp_path / "beat2.log", "this beat holds the schedule", second)
    finally:
        roles.stop()
        r.close()


def until_logged(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{log.name} never said {text!r}: {log.read_text()}"
        time.sleep(0.1)
