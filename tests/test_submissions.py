"""Submissions with photos, idempotency, edits, unpublishing and rate limits, for real."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feedparser
import psycopg
import pytest

from bantin.bootstrap import demo_seed, text_only
from shared.settings import Settings
from tests.fixtures.images import heic
from tests.photos import jpeg, multipart, png
from tests.test_api import bearer, create_category, problem, wait_status

SEED = demo_seed()
Client = Any


def seed_photos() -> dict[str, bytes]:
    colours = [
        (200, 30, 30),
        (30, 160, 30),
        (30, 30, 200),
        (220, 180, 20),
        (120, 20, 160),
        (20, 160, 160),
        (90, 90, 90),
    ]
    parts = [image["part"] for image in SEED["article"]["images"]]
    return {part: jpeg(900 + 40 * n, 600, colours[n], gps=True) for n, part in enumerate(parts)}


def media_files(settings: Settings) -> list[Path]:
    return [p for p in settings.media_dir.rglob("*") if p.is_file()]


def count_articles(settings: Settings) -> int:
    with psycopg.connect(settings.database_url or "") as conn:
        row = conn.execute("SELECT count(*) FROM articles").fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def api_with(aiohttp_client: Any, clean: Settings) -> Callable[..., Any]:
    """An ingest app with some settings changed (smaller limits)."""
    from services.ingest.app import create_app

    async def make(**changes: Any) -> Any:
        return await aiohttp_client(create_app(clean.with_(**changes)))

    return make


@pytest.mark.usefixtures("worker")
async def test_seed_article_with_photos_published_in_order(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    response = await api.post(
        "/api/v1/articles", data=multipart(SEED["article"], seed_photos()), headers=bearer(admin)
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    body = await wait_status(api, admin, accepted["id"], "published")
    sent = SEED["article"]["images"]
    assert [(i["part"], i["caption"], i["role"]) for i in body["images"]] == [
        (i["part"], i["caption"].replace("\xa0", " "), i["role"]) for i in sent
    ]
    for image in body["images"]:
        assert image["width"] and image["height"] and image["renditions"]
        assert {r["format"] for r in image["renditions"]} >= {"jpeg", "webp"}

    page = await (
        await site.get(accepted["links"]["page"].removeprefix("http://bantin.test"))
    ).text()
    captions = [i["caption"].replace("\xa0", " ") for i in sent if i["caption"]]
    positions = [page.index(f"<figcaption>{c}</figcaption>") for c in captions]
    assert positions == sorted(positions)  # in the body, in the order sent
    assert page.count("<picture>") >= 7
    assert SEED["article"]["gallery_title"] in page


@pytest.mark.usefixtures("worker")
async def test_truncated_photo_is_marked_failed_and_the_article_publishes(
    api: Client, admin: str
) -> None:
    """The header is fine (so ingest accepts it) but the data stops half way: the worker
    refuses that photo with the reason, not retrying it, and the article publishes without
    it: one broken photo never costs a whole article."""
    await create_category(api, admin)
    whole = jpeg(1200, 900)
    article = {
        **text_only(SEED["article"]),
        "body": '<p>Mở đầu.</p><img src="cid:a"><img src="cid:b"><p>Kết.</p>',
        "images": [{"part": "a", "caption": "Ảnh hỏng"}, {"part": "b", "caption": "Ảnh tốt"}],
    }
    response = await api.post(
        "/api/v1/articles",
        data=multipart(article, {"a": whole[: len(whole) // 2], "b": jpeg(800, 600)}),
        headers=bearer(admin),
    )
    assert response.status == 202, await response.text()
    body = await wait_status(api, admin, (await response.json())["id"], "published")
    broken, good = body["images"]
    assert "truncated" in broken["error"].lower() and broken["renditions"] == []
    assert "error" not in good and good["renditions"]


async def test_html_named_jpg_is_refused_and_leaves_no_file(
    api: Client, submitter: str, clean: Settings
) -> None:
    before = media_files(clean)
    article = {**text_only(SEED["article"]), "images": [{"part": "anh-1"}]}
    fake = b"<!doctype html><html><body>not a photo</body></html>" * 100
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"anh-1": fake}), headers=bearer(submitter)
    )
    body = await problem(response, 415)
    assert "anh-1" in body["detail"] and "decided by its bytes" in body["detail"]
    assert media_files(clean) == before


async def test_heic_from_an_iphone_is_415_saying_to_export_jpeg(
    api: Client, submitter: str, clean: Settings
) -> None:
    before = media_files(clean)
    article = {**text_only(SEED["article"]), "images": [{"part": "iphone"}]}
    response = await api.post(
        "/api/v1/articles",
        data=multipart(article, {"iphone": heic()}, "image/heic"),
        headers=bearer(submitter),
    )
    body = await problem(response, 415)
    assert "iphone" in body["detail"] and "HEIC" in body["detail"]
    assert "export the photo as JPEG" in body["detail"]
    assert media_files(clean) == before


async def test_svg_is_refused(api: Client, submitter: str) -> None:
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}]}
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'
    response = await api.post(
        "/api/v1/articles",
        data=multipart(article, {"a": svg}, "image/svg+xml"),
        headers=bearer(submitter),
    )
    await problem(response, 415)


async def test_photo_too_large(api_with: Callable[..., Any], clean: Settings) -> None:
    api = await api_with(max_photo_bytes=20_000)
    token = await _token(clean)
    big = jpeg(1600, 1200, quality=95)
    assert len(big) > 20_000
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": big}), headers=bearer(token)
    )
    body = await problem(response, 413)
    assert "'a' is larger than 20000 bytes" in body["detail"]
    assert media_files(clean) == []


async def test_too_many_pixels_refused_before_decoding(
    api_with: Callable[..., Any], clean: Settings
) -> None:
    api = await api_with(max_pixels=10_000)
    token = await _token(clean)
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": jpeg(200, 100)}), headers=bearer(token)
    )
    body = await problem(response, 413)
    assert "20000" in body["detail"] or "200" in body["detail"]
    assert media_files(clean) == []


async def test_too_many_photos(api_with: Callable[..., Any], clean: Settings) -> None:
    api = await api_with(max_photos=2)
    token = await _token(clean)
    photos = {f"p{n}": png() for n in range(3)}
    article = {**text_only(SEED["article"]), "images": [{"part": p} for p in photos]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, photos), headers=bearer(token)
    )
    await problem(response, 413)
    assert media_files(clean) == []


async def test_undecodable_photo(api: Client, submitter: str, clean: Settings) -> None:
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}]}
    broken = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": broken}), headers=bearer(submitter)
    )
    body = await problem(response, 422)
    assert body["type"].endswith("undecodable-image")
    assert media_files(clean) == []


async def test_broken_gif_is_told_in_words_not_python_internals(
    api: Client, submitter: str, clean: Settings
) -> None:
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": b"GIF89a\x01"}), headers=bearer(submitter)
    )
    detail = (await problem(response, 422))["detail"]
    assert detail.startswith("Part 'a': not a valid GIF file; it may be cut short or damaged")
    assert "unpack" not in detail and "buffer" not in detail
    assert media_files(clean) == []


async def test_parts_and_images_must_match(api: Client, admin: str, clean: Settings) -> None:
    await create_category(api, admin)
    article = {**text_only(SEED["article"]), "images": [{"part": "a"}, {"part": "b"}]}
    response = await api.post(
        "/api/v1/articles", data=multipart(article, {"a": png(), "c": png()}), headers=bearer(admin)
    )
    body = await problem(response, 422)
    messages = {e["field"]: e["message"] for e in body["errors"]}
    assert "no such part" in messages["images.1.part"]
    assert "'c' was sent but is not listed" in messages["images"]
    assert count_articles(clean) == 0 and media_files(clean) == []


async def test_multipart_without_article_part(api: Client, submitter: str) -> None:
    writer = multipart({}, {"a": png()})
    writer._parts.pop(0)  # drop the JSON part
    response = await api.post("/api/v1/articles", data=writer, headers=bearer(submitter))
    body = await problem(response, 422)
    assert "part named 'article'" in body["detail"]


async def test_malformed_article_part(api: Client, submitter: str) -> None:
    import aiohttp

    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append('{"title": ', {"Content-Type": "application/json"})
    part.set_content_disposition("form-data", name="article")
    response = await api.post("/api/v1/articles", data=writer, headers=bearer(submitter))
    await problem(response, 400)


# --- idempotency ---------------------------------------------------------------------------------


async def test_idempotency_replays_and_refuses_reuse(
    api: Client, admin: str, clean: Settings
) -> None:
    await create_category(api, admin)
    article = text_only(SEED["article"])
    headers = {**bearer(admin), "Idempotency-Key": "bai-1"}
    first = await api.post("/api/v1/articles", json=article, headers=headers)
    again = await api.post("/api/v1/articles", json=article, headers=headers)
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await api.post("/api/v1/articles", json={**article, "title": "Khác"}, headers=headers)
    body = await problem(other, 422)
    assert "different request" in body["detail"]
    assert count_articles(clean) == 1
    bad = await api.post(
        "/api/v1/articles", json=article, headers={**bearer(admin), "Idempotency-Key": "x" * 300}
    )
    await problem(bad, 400)


async def test_fifty_concurrent_requests_one_key_one_article(
    api: Client, admin: str, clean: Settings
) -> None:
    await create_category(api, admin)
    article = text_only(SEED["article"])
    headers = {**bearer(admin), "Idempotency-Key": "cung-mot-khoa"}
    responses = await asyncio.gather(
        *(api.post("/api/v1/articles", json=article, headers=headers) for _ in range(50))
    )
    statuses = [r.status for r in responses]
    assert set(statuses) <= {202, 409}, statuses
    assert 202 in statuses
    ids = {(await r.json())["id"] for r in responses if r.status == 202}
    assert len(ids) == 1
    for r in responses:
        if r.status == 409:
            assert r.headers["Retry-After"] == "1"
    assert count_articles(clean) == 1


# --- edits and unpublishing ----------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_edit_with_if_match(api: Client, site: Client, admin: str) -> None:
    await create_category(api, admin)
    accepted = await (
        await api.post("/api/v1/articles", json=text_only(SEED["article"]), headers=bearer(admin))
    ).json()
    await wait_status(api, admin, accepted["id"], "published")
    path = accepted["links"]["page"].removeprefix("http://bantin.test")
    assert SEED["article"]["title"] in await (await site.get(path)).text()
    url = f"/api/v1/articles/{accepted['id']}"
    current = await api.get(url, headers=bearer(admin))
    etag = current.headers["ETag"]

    missing = await api.patch(url, json={"title": "Mới"}, headers=bearer(admin))
    await problem(missing, 428)
    stale = await api.patch(
        url, json={"title": "Mới"}, headers={**bearer(admin), "If-Match": '"0-0"'}
    )
    assert (await problem(stale, 412))["type"].endswith("stale-etag")
    photos = await api.patch(url, json={"images": []}, headers={**bearer(admin), "If-Match": etag})
    await problem(photos, 422)

    new_title = "Hội nghị triển khai công tác năm 2022 (đã sửa)"
    edited = await api.patch(
        url, json={"title": new_title}, headers={**bearer(admin), "If-Match": etag}
    )
    assert edited.status == 200, await edited.text()
    assert edited.headers["ETag"] != etag
    assert (await edited.json())["title"] == new_title
    again = await api.patch(url, json={"title": "x"}, headers={**bearer(admin), "If-Match": etag})
    await problem(again, 412)

    for _ in range(100):  # the worker bumps the site version; the cached page goes stale
        response = await site.get(path, allow_redirects=False)
        if response.status == 301:
            break
        await asyncio.sleep(0.05)
    assert response.status == 301  # the slug followed the title: old address -> canonical
    page = await (await site.get(response.headers["Location"])).text()
    assert new_title in page
    feed = await _feed_with(site, lambda f: f.entries and f.entries[0].title == new_title)
    assert feed.entries[0].id == f"urn:uuid:{(await edited.json())['uuid']}"


@pytest.mark.usefixtures("worker")
async def test_unpublish(api: Client, site: Client, admin: str, submitter: str) -> None:
    await create_category(api, admin)
    accepted = await (
        await api.post("/api/v1/articles", json=text_only(SEED["article"]), headers=bearer(admin))
    ).json()
    await wait_status(api, admin, accepted["id"], "published")
    await _feed_with(site, lambda f: len(f.entries) == 1)
    url = f"/api/v1/articles/{accepted['id']}"
    # Another submitter neither sees nor removes it.
    await problem(await api.delete(url, headers=bearer(submitter)), 404)
    await problem(await api.get(url, headers=bearer(submitter)), 404)
    gone = await api.delete(url, headers=bearer(admin))
    assert gone.status == 200 and (await gone.json())["status"] == "unpublished"
    path = accepted["links"]["page"].removeprefix("http://bantin.test")
    for _ in range(100):
        if (await site.get(path)).status == 410:
            break
        await asyncio.sleep(0.05)
    page = await site.get(path)
    assert page.status == 410 and "Bài viết đã được gỡ" in await page.text()
    await _feed_with(site, lambda f: len(f.entries) == 0)


async def test_rate_limit(api_with: Callable[..., Any], clean: Settings) -> None:
    api = await api_with(rate_limit_per_minute=3)
    token = await _token(clean)
    statuses = [
        (await api.get("/api/v1/articles/1", headers=bearer(token))).status for _ in range(4)
    ]
    assert statuses[:3] == [404, 404, 404]
    response = await api.get("/api/v1/articles/1", headers=bearer(token))
    body = await problem(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "3 requests a minute" in body["detail"]


async def _token(settings: Settings, role: str = "admin") -> str:
    from tests.conftest import make_token

    return await make_token(settings, role)


async def _feed_with(site: Client, ok: Callable[[Any], Any]) -> Any:
    for _ in range(100):
        response = await site.get("/feeds/all.atom")
        if response.status == 200:
            parsed = feedparser.parse(await response.read())
            if ok(parsed):
                return parsed
        await asyncio.sleep(0.05)
    raise AssertionError("the feed never matched")
