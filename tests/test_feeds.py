"""Feeds as readers get them: strictly valid, conditional, compressed, paged, coalesced, pushed."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import brotli
import feedparser
import psycopg
import pytest
import redis as redis_lib
from lxml import etree

from bantin.bootstrap import demo_seed, text_only
from shared import keys
from shared.settings import Settings
from tests.conftest import Hub, publisher
from tests.photos import jpeg, multipart
from tests.test_api import bearer, create_category, wait_status

SEED = demo_seed()
Client = Any
STRICT = etree.XMLParser(recover=False, resolve_entities=False, no_network=True)
HOSTILE_TITLE = 'Tin "nóng" ]]> <script>alert(1)</script> & 📰 Ủy ban \x07\x1b'


async def publish(api: Client, token: str, **changes: Any) -> dict[str, Any]:
    article = {**text_only(SEED["article"]), **changes}
    response = await api.post("/api/v1/articles", json=article, headers=bearer(token))
    assert response.status == 202, await response.text()
    accepted: dict[str, Any] = await response.json()
    return accepted


async def feed_until(
    site: Client, path: str, entries: int, tries: int = 200, **headers: str
) -> Any:
    for _ in range(tries):
        response = await site.get(path, headers=headers)
        if response.status == 200:
            body = await response.read()
            count = (
                len(json.loads(body)["items"])
                if path.endswith(".json")
                else len(feedparser.parse(body).entries)
            )
            if count == entries:
                return response, body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never had {entries} entries")


@pytest.mark.usefixtures("worker")
async def test_every_feed_is_strictly_valid(api: Client, site: Client, admin: str) -> None:
    await create_category(api, admin)
    first = await publish(
        api,
        admin,
        title=HOSTILE_TITLE,
        body="<p>]]&gt; ]]> <b>đậm</b> \x0b <iframe src=x></iframe></p>",
    )
    await wait_status(api, admin, first["id"], "published")
    for scope in ("all", "tin-hoat-dong"):
        for fmt in ("rss", "atom"):
            response, body = await feed_until(site, f"/feeds/{scope}.{fmt}", 1)
            assert response.headers["Content-Type"].startswith(
                "application/rss+xml" if fmt == "rss" else "application/atom+xml"
            )
            etree.fromstring(body, parser=STRICT)  # raises on any invalid byte
            parsed = feedparser.parse(body)
            assert not parsed.bozo, parsed.get("bozo_exception")
            title = parsed.entries[0].title
            assert "]]>" in title and "<script>" in title and "📰" in title
            assert "\x07" not in title and "\x1b" not in title
            assert parsed.entries[0].link.startswith("http://bantin.test/tin-hoat-dong/")
            assert parsed.feed.language == "vi" if fmt == "rss" else True
        response, body = await feed_until(site, f"/feeds/{scope}.json", 1)
        assert response.headers["Content-Type"].startswith("application/feed+json")
        doc = json.loads(body)
        assert doc["version"] == "https://jsonfeed.org/version/1.1"
        assert doc["feed_url"] == f"http://bantin.test/feeds/{scope}.json"
        item = doc["items"][0]
        for field in (
            "id",
            "url",
            "title",
            "content_html",
            "summary",
            "date_published",
            "date_modified",
            "authors",
            "language",
        ):
            assert field in item, field
        assert item["id"].startswith("urn:uuid:") and item["language"] == "vi"
        datetime.fromisoformat(item["date_published"])
        assert "<iframe" not in item["content_html"]


@pytest.mark.usefixtures("worker")
async def test_conditional_get_and_compression(
    api: Client, site: Client, admin: str, hub: Hub
) -> None:
    await create_category(api, admin)
    await wait_status(api, admin, (await publish(api, admin))["id"], "published")
    response, body = await feed_until(site, "/feeds/all.rss", 1)
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "max-age=60" in response.headers["Cache-Control"]
    assert f'<{hub.url}>; rel="hub"' in response.headers["Link"]
    assert '<http://bantin.test/feeds/all.rss>; rel="self"' in response.headers["Link"]
    for headers in (
        {"If-None-Match": etag},
        {"If-Modified-Since": modified},
        {"If-None-Match": f'"other", {etag}'},
    ):
        again = await site.get("/feeds/all.rss", headers=headers)
        assert again.status == 304 and again.headers["ETag"] == etag
    changed = await site.get("/feeds/all.rss", headers={"If-None-Match": '"stale"'})
    assert changed.status == 200
    raw = await site.get(
        "/feeds/all.rss", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await raw.read()) == body
    raw = await site.get(
        "/feeds/all.rss", headers={"Accept-Encoding": "gzip, br"}, auto_decompress=False
    )
    assert raw.headers["Content-Encoding"] == "br"
    assert brotli.decompress(await raw.read()) == body


@pytest.mark.usefixtures("worker")
async def test_burst_of_publications_is_coalesced(
    api: Client, site: Client, admin: str, clean: Settings
) -> None:
    await create_category(api, admin)
    await asyncio.gather(*(publish(api, admin, title=f"Tin số {n}") for n in range(100)))
    # The feed is watched rather than each article through the API (whose rate limit 100
    # articles polled on a slow machine would reach): all 100 in it means all published.
    _, body = await feed_until(site, "/feeds/all.atom", 100, tries=3000)
    titles = {e.title for e in feedparser.parse(body).entries}
    assert titles == {f"Tin số {n}" for n in range(100)}
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    rebuilds = int(r.hget(keys.FEEDS_STATS, "rebuilds") or 0)
    r.close()
    # Two scopes (the site and the category) per rebuild; 100 publications in a few seconds
    # give a handful of rebuilds, not 100.
    assert 2 <= rebuilds <= 30, rebuilds


@pytest.mark.usefixtures("worker")
async def test_the_sweep_refreshes_feeds_a_lost_message_left_stale(
    api: Client, site: Client, admin: str, clean: Settings
) -> None:
    """An article published while its `site_changed` was lost (Redis away just after the
    commit, a worker killed between the two) reaches the feeds and pages at the next sweep."""
    from workers.app import SWEEP, app

    await create_category(api, admin)
    await wait_status(api, admin, (await publish(api, admin, title="Tin cũ"))["id"], "published")
    await feed_until(site, "/feeds/all.json", 1)
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    for _ in range(200):
        if r.hexists(keys.FEEDS_READ_AT, "all"):  # stored just after the feeds
            break
        await asyncio.sleep(0.05)
    version = int(r.get(keys.SITE_VERSION) or 0)
    # The feeds last read the articles ten minutes ago; a minute ago an article was published
    # and nothing said so.
    long_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    scopes = ("all", SEED["category"]["slug"])
    r.hset(keys.FEEDS_READ_AT, mapping=dict.fromkeys(scopes, long_ago))
    r.set(keys.FEEDS_CHECKED, long_ago)
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO articles (uuid, slug, category_id, title, body_html, status,"
            " published_at, updated_at, search_text) SELECT gen_random_uuid(), 'tin-moi', id,"
            " 'Tin mới', '<p>Tin mới.</p>', 'published', now() - interval '1 minute',"
            " now() - interval '1 minute', 'tin moi' FROM categories LIMIT 1"
        )
    app.send_task(SWEEP)
    _, body = await feed_until(site, "/feeds/all.json", 2)
    assert {item["title"] for item in json.loads(body)["items"]} == {"Tin cũ", "Tin mới"}
    assert int(r.get(keys.SITE_VERSION) or 0) > version  # cached pages went stale too
    r.close()


@pytest.mark.usefixtures("worker")
async def test_the_sweep_sees_a_write_committed_after_a_rebuild_read(
    api: Client, site: Client, admin: str, clean: Settings
) -> None:
    """A batch stamps its rows with its transaction's start; a feed rebuild that reads while it
    is still open does not see them, and its site_changed is then lost: the rebuild's mark is
    the start of the oldest open transaction, so the sweep still finds the rows newer."""
    from workers.app import SITE_CHANGED, SWEEP, app
    from workers.feeds import STALE_AFTER

    await create_category(api, admin)
    await wait_status(api, admin, (await publish(api, admin, title="Tin cũ"))["id"], "published")
    await feed_until(site, "/feeds/all.json", 1)
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    with psycopg.connect(clean.require_backends()[0]) as conn:  # a transaction left open
        conn.execute(
            "INSERT INTO articles (uuid, slug, category_id, title, body_html, status,"
            " published_at, search_text) SELECT gen_random_uuid(), 'tin-moi', id, 'Tin mới',"
            " '<p>Tin mới.</p>', 'published', now(), 'tin moi' FROM categories LIMIT 1"
        )
        before = r.hget(keys.FEEDS_READ_AT, "all")
        app.send_task(SITE_CHANGED, args=[[]])  # a rebuild while the insert is not committed
        for _ in range(200):
            if r.hget(keys.FEEDS_READ_AT, "all") != before:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the feeds were not rebuilt")
        conn.commit()  # and no site_changed follows
    await asyncio.sleep(STALE_AFTER + 1)  # the sweep looks at changes this old
    _, body = await feed_until(site, "/feeds/all.json", 1)
    app.send_task(SWEEP)
    _, body = await feed_until(site, "/feeds/all.json", 2)
    assert {item["title"] for item in json.loads(body)["items"]} == {"Tin cũ", "Tin mới"}
    r.close()


@pytest.mark.usefixtures("worker")
async def test_websub_hub_is_pinged(api: Client, admin: str, hub: Hub) -> None:
    await create_category(api, admin)
    await wait_status(api, admin, (await publish(api, admin))["id"], "published")
    for _ in range(100):
        if "http://bantin.test/feeds/tin-hoat-dong.atom" in hub.urls():
            break
        await asyncio.sleep(0.05)
    assert {
        "http://bantin.test/feeds/all.rss",
        "http://bantin.test/feeds/tin-hoat-dong.atom",
    } <= hub.urls()
    assert all(ping["hub.mode"] == ["publish"] for ping in hub.pings)


@pytest.mark.usefixtures("worker")
async def test_paged_feeds(api: Client, aiohttp_client: Any, admin: str, clean: Settings) -> None:
    site = await publisher(aiohttp_client, clean.with_(feed_size=2))
    await create_category(api, admin)
    for n in range(5):
        accepted = await publish(
            api, admin, title=f"Bài {n}", published_at=f"2022-01-1{n}T08:00:00+07:00"
        )
        await wait_status(api, admin, accepted["id"], "published")
    page2 = await site.get("/feeds/all.atom?page=2")
    assert page2.status == 200
    doc = etree.fromstring(await page2.read(), parser=STRICT)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert [t.text for t in doc.findall("a:entry/a:title", ns)] == ["Bài 2", "Bài 1"]
    links = {link.get("rel"): link.get("href") for link in doc.findall("a:link", ns)}
    assert links["next"] == "http://bantin.test/feeds/all.atom?page=3"
    assert links["previous"] == "http://bantin.test/feeds/all.atom"
    assert links["first"] == "http://bantin.test/feeds/all.atom"
    page3 = feedparser.parse(await (await site.get("/feeds/all.rss?page=3")).read())
    assert [e.title for e in page3.entries] == ["Bài 0"] and not page3.bozo
    assert (await site.get("/feeds/all.rss?page=4")).status == 404
    assert (await site.get("/feeds/all.rss?page=0")).status == 400


async def test_unknown_feeds(site: Client) -> None:
    assert (await site.get("/feeds/khong-co.rss")).status == 404
    assert (await site.get("/feeds/all.xml")).status == 404


async def test_first_feed_is_rendered_from_the_database_before_its_first_rebuild(
    site: Client, clean: Settings
) -> None:
    """A new site, or Redis emptied: no rebuild has stored the feed yet, and no worker runs.
    Readers get the feed the database holds, never a 503."""
    empty = await site.get("/feeds/all.rss")
    assert empty.status == 200, await empty.text()
    parsed = feedparser.parse(await empty.read())
    assert not parsed.bozo and parsed.entries == []
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        category = conn.execute(
            "INSERT INTO categories (slug, name) VALUES ('tin-moi', 'Tin mới') RETURNING id"
        ).fetchone()
        assert category is not None
        conn.execute(
            "INSERT INTO articles (uuid, slug, category_id, title, status, published_at,"
            " search_text) VALUES (gen_random_uuid(), 'bai-dau', %s, 'Bài đầu tiên',"
            " 'published', now() - interval '1 hour', 'bai dau tien')",
            (category[0],),
        )
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    r.incr(keys.SITE_VERSION)  # what the worker does after a publication
    r.close()
    for fmt in ("rss", "atom", "json"):
        response = await site.get(f"/feeds/tin-moi.{fmt}")
        assert response.status == 200, await response.text()
        assert "Bài đầu tiên" in await response.text()
        assert response.headers["ETag"] and response.headers["Last-Modified"]


async def test_first_poll_after_a_rebuild_gets_the_new_feed(site: Client, clean: Settings) -> None:
    """A feed held in the process is answered from memory for a second; after that, the next
    request checks Redis first (one check for every request waiting on it) and gets what a
    rebuild stored, never the copy held and a 304 for its old validator. Redis failing during
    the check leaves the held feed served, checked again a second later, never an error."""
    from redis.asyncio import Redis

    from services.publisher.feeds import stored_key

    r = redis_lib.Redis.from_url(clean.redis_url or "")

    def store(version: int) -> None:
        r.hset(
            keys.feed("all", "rss"),
            mapping={
                "body": f"<rss>{version}</rss>",
                "etag": f'"v{version}"',
                "last_modified": "Fri, 27 Nov 2026 02:00:00 GMT",
                "content_type": "application/rss+xml; charset=utf-8",
            },
        )

    async def served(**headers: str) -> str:
        response = await site.get("/feeds/all.rss", headers=headers)
        assert response.status == 200
        return await response.text()

    def age() -> None:
        when, prepared = held.local[("all", "rss")]
        held.local[("all", "rss")] = (when - 5, prepared)  # its second is up

    held = site.server.app[stored_key]
    store(1)
    assert await served() == "<rss>1</rss>"
    store(2)
    assert await served() == "<rss>1</rss>"  # held, fresh: Redis is not asked
    age()
    # The first poll after the rebuild, with the validator of the version it holds: the new one.
    assert await served(**{"If-None-Match": '"v1"'}) == "<rss>2</rss>"
    # Many at once share one check.
    age()
    store(3)
    bodies = await asyncio.gather(*(served() for _ in range(20)))
    assert set(bodies) == {"<rss>3</rss>"} and not held.checks

    store(4)
    working = held.redis
    held.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        age()
        assert await served() == "<rss>3</rss>"  # Redis away: the feed held
        assert not held.checks
        assert held.current("all", "rss") is not None  # the failed check counts for a second
    finally:
        await held.redis.aclose()
        held.redis = working
        r.close()
    age()
    assert await served() == "<rss>4</rss>"


@pytest.mark.usefixtures("worker")
async def test_withdrawal_moves_last_modified(api: Client, site: Client, admin: str) -> None:
    """Last-Modified is when the feed's content last changed: a withdrawn entry moves it, so a
    reader revalidating with If-Modified-Since alone gets the feed without it."""
    await create_category(api, admin)
    kept = await publish(api, admin, title="Tin giữ lại")
    await wait_status(api, admin, kept["id"], "published")
    gone = await publish(api, admin, title="Tin sẽ gỡ")
    await wait_status(api, admin, gone["id"], "published")
    response, _ = await feed_until(site, "/feeds/all.rss", 2)
    before = response.headers["Last-Modified"]
    await asyncio.sleep(1.1)  # HTTP dates count whole seconds
    deleted = await api.delete(f"/api/v1/articles/{gone['id']}", headers=bearer(admin))
    assert deleted.status == 200, await deleted.text()
    response, _ = await feed_until(site, "/feeds/all.rss", 1, **{"If-Modified-Since": before})
    after = response.headers["Last-Modified"]
    assert parsedate_to_datetime(after) > parsedate_to_datetime(before)
    assert parsedate_to_datetime(after) <= datetime.now(UTC)


@pytest.mark.usefixtures("worker")
async def test_a_date_moved_into_the_future_schedules_the_article(
    api: Client, site: Client, admin: str
) -> None:
    """A published article whose date is moved ahead is scheduled, everywhere: out of the
    feeds and listings until then, and no validator from the future."""
    await create_category(api, admin)
    accepted = await publish(api, admin, title="Tin dời lịch")
    published = await wait_status(api, admin, accepted["id"], "published")
    await feed_until(site, "/feeds/all.atom", 1)
    url = f"/api/v1/articles/{accepted['id']}"
    current = await api.get(url, headers=bearer(admin))
    future = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    edited = await api.patch(
        url,
        json={"published_at": future},
        headers={**bearer(admin), "If-Match": current.headers["ETag"]},
    )
    assert edited.status == 200, await edited.text()
    await wait_status(api, admin, accepted["id"], "scheduled")
    response, _ = await feed_until(site, "/feeds/all.atom", 0)
    assert parsedate_to_datetime(response.headers["Last-Modified"]) <= datetime.now(UTC)
    home = await (await site.get("/")).text()
    assert published["links"]["page"].removeprefix("http://bantin.test") not in home
    page = await site.get(published["links"]["page"].removeprefix("http://bantin.test"))
    assert page.status == 404


def test_one_scope_failing_does_not_cost_the_others_their_rebuild(
    clean: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A category whose rebuild raises stays dirty for the next rebuild, and the scopes after
    it in the same rebuild are stored all the same. (Rows that cannot be read no longer make a
    rebuild raise: they are skipped; so the failure is injected here, in this process.)"""
    from workers import feeds as worker_feeds
    from workers.app import close, configure

    configure(clean)
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        for slug in ("aaa", "zzz"):
            category = conn.execute(
                "INSERT INTO categories (slug, name) VALUES (%s, %s) RETURNING id", (slug, slug)
            ).fetchone()
            assert category is not None
            conn.execute(
                "INSERT INTO articles (uuid, slug, category_id, title, status, published_at,"
                " search_text) VALUES (gen_random_uuid(), 'bai', %s, %s, 'published', now(), '')",
                (category[0], f"Tin {slug}"),
            )
    real = worker_feeds._rebuild

    async def failing(scope: str) -> list[str]:
        if scope == "aaa":
            raise RuntimeError("cannot render")
        return await real(scope)

    monkeypatch.setattr(worker_feeds, "_rebuild", failing)
    r = redis_lib.Redis.from_url(clean.redis_url or "")
    try:
        r.sadd(keys.FEEDS_DIRTY, "aaa", "all", "zzz")
        with pytest.raises(Exception, match="cannot render"):
            worker_feeds.rebuild_feeds()  # raised after the others are stored, to be retried
        assert r.exists(keys.feed("zzz", "rss")), "the scope after the failing one was dropped"
        assert b"Tin zzz" in (r.hget(keys.feed("zzz", "rss"), "body") or b"")
        assert r.sismember(keys.FEEDS_DIRTY, "aaa")  # kept for the next rebuild
        assert not r.exists(keys.feed("aaa", "rss"))
    finally:
        r.close()
        close()


@pytest.mark.usefixtures("worker")
async def test_rss_enclosure_gives_the_renditions_length(
    api: Client, site: Client, admin: str, clean: Settings
) -> None:
    await create_category(api, admin)
    article = {**text_only(SEED["article"]), "images": [{"part": "a", "role": "cover"}]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": jpeg(1600, 1000)}), headers=bearer(admin)
    )
    assert response.status == 202, await response.text()
    await wait_status(api, admin, (await response.json())["id"], "published")
    _, body = await feed_until(site, "/feeds/all.rss", 1)
    enclosure = etree.fromstring(body, parser=STRICT).find("channel/item/enclosure")
    assert enclosure is not None
    url = enclosure.get("url")
    assert url is not None and url.startswith("http://bantin.test/media/")
    served = await site.get(url.removeprefix("http://bantin.test"))
    assert served.status == 200
    assert int(enclosure.get("length") or 0) == len(await served.read()) > 0
