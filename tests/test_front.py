"""The front door (services/publisher/front.py): cached pages and stored feeds answered before
aiohttp's router and middleware, exactly as the application answers them, and everything else
left to the application."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import brotli
import pytest
import redis as redis_lib

from bantin.embedded import free_port
from services.publisher import front, views
from shared import keys
from shared.counting.record import COOKIE, Recorder, hits_key
from shared.feeds import stored
from shared.settings import Settings
from tests.conftest import ROOT
from tests.test_api import create_category
from tests.test_site import publish as publish_article
from tests.test_site import short

Client = Any
RID = re.compile(r"[0-9a-f]{16}")


def door_of(site: Client) -> front.FrontDoor:
    return site.server.app[front.front_key]


async def quiet_recorder(site: Client) -> Recorder:
    """The page views stay in the recorder's buffer, to be read by the test."""
    recorder = site.server.app[hits_key]
    recorder.interval, recorder.flush_at = 3600.0, 10**9
    await asyncio.sleep(0.3)  # the flusher's current short wait ends; the next one is long
    return recorder


def viewed(recorder: Recorder, path: str) -> int:
    return sum(n for line, n in recorder.lines.items() if line.split(" ", 4)[4] == path)


@pytest.fixture
async def article_path(api: Client, admin: str) -> str:
    await create_category(api, admin)
    article = await publish_article(api, admin, short("Cửa trước", "Trang được lưu sẵn."))
    path: str = article["links"]["page"].removeprefix("http://bantin.test")
    return path


@pytest.mark.usefixtures("worker")
async def test_a_cached_page_is_answered_at_the_door_as_the_app_answers_it(
    site: Client, article_path: str
) -> None:
    door, recorder = door_of(site), await quiet_recorder(site)
    first = await site.get(article_path)
    assert first.status == 200 and door.answered == 0  # the application, which prepares it
    body = await first.read()

    second = await site.get(article_path)
    assert second.status == 200 and door.answered == 1
    assert await second.read() == body
    for name in ("Content-Type", "ETag", "Cache-Control"):
        assert second.headers[name] == first.headers[name], name
    assert RID.fullmatch(second.headers["X-Request-ID"])
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    mine = await site.get(article_path, headers={"X-Request-ID": "from-the-proxy"})
    assert mine.headers["X-Request-ID"] == "from-the-proxy" and door.answered == 2

    # A matching validator: 304 at the door, and it is a page view, as in the application.
    cached = await site.get(article_path, headers={"If-None-Match": first.headers["ETag"]})
    assert cached.status == 304 and cached.headers["ETag"] == first.headers["ETag"]
    assert door.answered == 3
    assert viewed(recorder, article_path) == 4

    # A new reader gets a cookie at the door too.
    site.session.cookie_jar.clear()
    new = await site.get(article_path)
    assert new.status == 200 and door.answered == 4
    assert new.headers["Set-Cookie"].startswith(f"{COOKIE}=")
    assert viewed(recorder, article_path) == 5

    # Anything else goes to the application, which answers as before.
    query = await site.get(article_path, params={"utm_source": "zalo"})
    assert query.status == 200 and await query.read() == body
    head = await site.head(article_path)
    assert head.status == 200
    assert door.answered == 4
    assert (await site.get("/khong-co/bai-viet-999999")).status == 404
    assert door.answered == 4
    category, slug = article_path.strip("/").split("/")
    assert (await site.get(f"/{category}%2F{slug}")).status == 404  # the router's answer
    assert door.answered == 4

    # The door's answers are in the request statistics, under the article route.
    metrics = await (await site.get("/metrics")).text()
    counted = re.search(
        r'bantin_http_requests_total\{method="GET",route="/\{category\}/\{tail\}",status="200"\}'
        r" (\S+)",
        metrics,
    )
    assert counted is not None and float(counted.group(1)) >= 5, metrics[:3000]
    assert re.search(r"^bantin_front_door_answers 4\.0$", metrics, re.M)


@pytest.mark.usefixtures("worker")
async def test_every_cached_page_kind_is_the_same_from_the_door(
    site: Client, article_path: str
) -> None:
    """Home, a category page (and its second page, which has a query string) and an article:
    the application's answer, then the door's, byte for byte."""
    door = door_of(site)
    category = "/" + article_path.strip("/").split("/")[0] + "/"
    for path, by_door in (("/", 1), (category, 1), (category + "?page=2", 0), (article_path, 1)):
        before = door.answered
        first = await site.get(path)
        second = await site.get(path)
        assert second.status == first.status, path
        assert await second.read() == await first.read(), path
        assert second.headers.get("ETag") == first.headers.get("ETag"), path
        assert door.answered - before == by_door, path


def test_only_plain_paths_are_learnt() -> None:
    """Aliases of one page (percent-escapes, absolute-form targets) are left to the app, so a
    client cannot fill the door's table with them."""
    from aiohttp.test_utils import make_mocked_request

    from shared.metrics import RequestStats

    door = front.FrontDoor(RequestStats())
    for target in ("/tin-tuc/%61bc-1", "/tin-tuc/abc-1?x=1", "/tin-tuc/abc-1"):
        door.remember(make_mocked_request("GET", target), lambda request: None)
    door.remember(make_mocked_request("HEAD", "/khac-1"), lambda request: None)
    assert list(door.paths) == ["/tin-tuc/abc-1"]


@pytest.mark.usefixtures("worker")
async def test_a_changed_page_falls_through_to_the_application(
    site: Client, clean: Settings, article_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.publisher import cache as cache_module

    door = door_of(site)
    await site.get(article_path)
    assert (await site.get(article_path)).status == 200 and door.answered == 1
    # The statistics change: the next answer is prepared again, by the application.
    monkeypatch.setattr(cache_module, "LIVE_SECONDS", 0.0)
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    r.incrby(keys.TOTAL, 7)
    r.close()
    changed = await site.get(article_path)
    assert changed.status == 200 and door.answered == 1
    assert 'class="stat-total">7<' in await changed.text()


async def test_a_failing_door_leaves_the_answer_to_the_application(
    site: Client, caplog: pytest.LogCaptureFixture
) -> None:
    door = door_of(site)
    assert (await site.get("/")).status == 200
    held = door.paths["/"]

    def broken(request: Any) -> Any:
        raise RuntimeError("a bug at the door")

    door.paths["/"] = (broken, held[1])
    with caplog.at_level(logging.ERROR, logger="services.publisher.front"):
        response = await site.get("/")
    assert response.status == 200 and "<html" in await response.text()
    assert door.answered == 0
    assert "the front door failed on /" in caplog.text


async def test_a_stored_feed_is_answered_at_the_door(
    site: Client, clean: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stored, "FRESH_SECONDS", 3600.0)  # however slow the machine is today
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    body = "<rss><channel><title>Tin</title></channel></rss>"
    r.hset(
        keys.feed("all", "rss"),
        mapping={
            "body": body,
            "gzip": gzip.compress(body.encode()),
            "etag": '"feed-1"',
            "last_modified": "Fri, 27 Nov 2026 02:00:00 GMT",
            "content_type": "application/rss+xml; charset=utf-8",
        },
    )
    r.close()
    door = door_of(site)
    first = await site.get("/feeds/all.rss", headers={"Accept-Encoding": "identity"})
    assert first.status == 200 and door.answered == 0
    plain = await site.get("/feeds/all.rss", headers={"Accept-Encoding": "identity"})
    assert plain.status == 200 and await plain.text() == body and door.answered == 1
    assert plain.headers["ETag"] == '"feed-1"' and "Content-Encoding" not in plain.headers
    packed = await site.get(
        "/feeds/all.rss", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert packed.headers["Content-Encoding"] == "gzip" and door.answered == 2
    assert gzip.decompress(await packed.read()).decode() == body
    cached = await site.get("/feeds/all.rss", headers={"If-None-Match": '"feed-1"'})
    assert cached.status == 304 and door.answered == 3
    # Older pages and unknown feeds are the application's.
    assert (await site.get("/feeds/all.atom")).status == 200  # rendered from the database
    assert (await site.get("/feeds/all.rss?page=2")).status == 404
    assert door.answered == 3


def test_the_runner_installs_the_hook_and_stops_gracefully() -> None:
    """`bantin publisher` serves through shared.web.run: the app's server hook is installed on
    the low-level server before it listens (here it answers /door itself, in front of the
    app), and SIGTERM stops it gracefully, running the app's cleanup."""
    port = free_port()
    code = f"""
import sys
from aiohttp import web
from shared.web import run, server_hook_key

class Door:
    def install(self, server):
        inner = server.request_handler
        async def handle(request):
            if request.path == "/door":
                return web.Response(text="door")
            return await inner(request)
        server.request_handler = handle

async def app_page(request):
    return web.Response(text="app")

async def cleanup(app):
    print("cleaned up", flush=True)

app = web.Application()
app[server_hook_key] = Door()
app.router.add_get("/", app_page)
app.on_cleanup.append(cleanup)
run(app, host="127.0.0.1", port={port})
"""
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/door", timeout=5) as r:
                        assert r.read() == b"door"
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the server never answered"
                    time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                assert r.read() == b"app"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0 and "cleaned up" in out
        finally:
            if proc.poll() is None:
                proc.kill()


async def raw_get(site: Client, path: str, extra: bytes = b"") -> bytes:
    """One request as bytes on the wire (headers a client library would refuse to send), and
    everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection(site.server.host, site.server.port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bantin.test\r\n".encode()
            + extra
            + b"Connection: close\r\n\r\n"
        )
        return await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()


@pytest.mark.usefixtures("worker")
async def test_an_unusable_request_id_is_replaced(site: Client, article_path: str) -> None:
    """Bytes that are not UTF-8 (or not printable) in X-Request-ID cannot be sent back: the
    page is answered with a new id, at the door and in the application alike."""
    for path in (article_path, article_path, "/", "/khong-co/"):  # the door, then the app
        for bad in (b"\xff\xfe", "tin-\u1ee9ng".encode()):
            answer = await raw_get(site, path, b"X-Request-ID: " + bad + b"\r\n")
            status, _, rest = answer.partition(b"\r\n")
            assert status in (b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"), answer[:300]
            rid = re.search(rb"\r\nX-Request-ID: ([^\r]*)\r\n", rest)
            assert rid is not None and RID.fullmatch(rid[1].decode()), rest[:500]
    assert door_of(site).answered >= 3


@pytest.mark.usefixtures("worker")
async def test_cached_pages_are_compressed_once_for_every_answer(
    site: Client, article_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Brotli and gzip forms of a cached page are made once per page and statistics snapshot,
    then chosen per request by its Accept-Encoding (q-values honoured), at the door and in the
    application alike; every answer says it varies with Accept-Encoding."""
    made: list[int] = []
    real = views.compressed

    def counted(body: bytes) -> dict[str, bytes]:
        made.append(len(body))
        return real(body)

    monkeypatch.setattr(views, "compressed", counted)
    await quiet_recorder(site)  # the statistics hold still: one snapshot
    plain = await site.get(article_path, headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in plain.headers
    cases = [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0.5, br;q=0.4", "gzip"),
        ("*", "br"),
        ("br;q=0, gzip;q=0", None),
        ("deflate", None),
    ]
    for header, coding in cases:
        answer = await site.get(
            article_path, headers={"Accept-Encoding": header}, auto_decompress=False
        )
        assert answer.status == 200 and answer.headers["Vary"] == "Accept-Encoding"
        raw = await answer.read()
        assert answer.headers.get("Content-Encoding") == coding, header
        unpack = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[coding]
        assert unpack(raw) == body, header
        if coding:
            assert len(raw) < len(body) / 2
    assert door_of(site).answered >= 1  # (the rest too, unless a second passed meanwhile)
    assert made == [len(body)]  # once, for every answer since
    cached = await site.get(article_path, headers={"If-None-Match": plain.headers["ETag"]})
    assert cached.status == 304 and cached.headers["Vary"] == "Accept-Encoding"
