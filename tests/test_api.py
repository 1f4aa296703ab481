"""The submitters' API against real PostgreSQL, Redis and a real Celery worker."""

from __future__ import annotations

import asyncio
import io
import json
import unicodedata
from typing import Any

import aiohttp
import feedparser
import pytest

from bantin.bootstrap import demo_seed, text_only
from shared.settings import Settings
from tests.conftest import QUIET_DB
from tests.fixtures.moving import query

PROBLEM = "application/problem+json"
SEED = demo_seed()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = json.loads(await response.text())
    assert body["status"] == status
    assert body["title"] and body["type"].startswith("https://")
    return body


async def create_category(api: Any, admin: str) -> None:
    response = await api.post("/api/v1/categories", json=SEED["category"], headers=bearer(admin))
    assert response.status == 201, await response.text()


async def wait_status(api: Any, token: str, article_id: int, want: str) -> dict[str, Any]:
    for _ in range(200):
        response = await api.get(f"/api/v1/articles/{article_id}", headers=bearer(token))
        body: dict[str, Any] = await response.json()
        if body["status"] == want:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"article {article_id} stayed {body['status']}, never {want}")


# --- refusals ------------------------------------------------------------------------------------


async def test_no_token(api: Any) -> None:
    response = await api.post("/api/v1/articles", json={"title": "x"})
    body = await problem(response, 401)
    assert "Authorization: Bearer" in body["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_token(api: Any, submitter: str) -> None:
    response = await api.post("/api/v1/articles", json={}, headers=bearer(submitter + "x"))
    body = await problem(response, 401)
    assert "unknown or has been revoked" in body["detail"]


async def test_wrong_scheme(api: Any, submitter: str) -> None:
    response = await api.post(
        "/api/v1/articles", json={}, headers={"Authorization": f"Basic {submitter}"}
    )
    await problem(response, 401)


async def test_malformed_json(api: Any, submitter: str) -> None:
    response = await api.post(
        "/api/v1/articles",
        data=b'{"title": "Tin',
        headers={**bearer(submitter), "Content-Type": "application/json"},
    )
    body = await problem(response, 400)
    assert "not valid JSON" in body["detail"]


async def test_json_not_object(api: Any, submitter: str) -> None:
    response = await api.post("/api/v1/articles", json=["a"], headers=bearer(submitter))
    body = await problem(response, 422)
    assert body["errors"][0]["field"] == "article"


async def test_wrong_content_type(api: Any, submitter: str) -> None:
    response = await api.post(
        "/api/v1/articles",
        data="title=x",
        headers={**bearer(submitter), "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await problem(response, 415)
    assert "application/json" in body["detail"]


async def test_missing_fields(api: Any, submitter: str) -> None:
    response = await api.post("/api/v1/articles", json={"summary": "x"}, headers=bearer(submitter))
    body = await problem(response, 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert fields == {"title": "is required", "category": "is required", "body": "is required"}
    assert all(e["pointer"].startswith("/") for e in body["errors"])


async def test_every_field_error_at_once(api: Any, submitter: str) -> None:
    article = {
        "title": "  ",
        "category": 7,
        "body": "<p>x</p><img src='cid:missing'>",
        "body_format": "docx",
        "published_at": "2022-01-12 08:16",
        "tags": "a,b",
        "colour": "red",
        "author": "A" * 201,
    }
    response = await api.post("/api/v1/articles", json=article, headers=bearer(submitter))
    body = await problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {
        "title",
        "category",
        "body",
        "body_format",
        "published_at",
        "tags",
        "colour",
        "author",
    }
    messages = " ".join(e["message"] for e in body["errors"])
    assert "needs a UTC offset" in messages and "cid:missing" in messages


async def test_unknown_category(api: Any, submitter: str) -> None:
    article = {**text_only(SEED["article"]), "category": "khong-co"}
    response = await api.post("/api/v1/articles", json=article, headers=bearer(submitter))
    body = await problem(response, 422)
    assert body["errors"][0]["field"] == "category"
    assert "khong-co" in body["errors"][0]["message"]


async def test_photos_need_multipart(api: Any, admin: str) -> None:
    await create_category(api, admin)
    response = await api.post("/api/v1/articles", json=SEED["article"], headers=bearer(admin))
    body = await problem(response, 422)
    assert "multipart" in body["errors"][0]["message"]


async def test_too_large_json(api: Any, submitter: str, clean: Any) -> None:
    huge = json.dumps({"title": "x", "body": "x" * (clean.max_json_bytes + 10)}).encode()
    response = await api.post(
        "/api/v1/articles",
        data=io.BytesIO(huge),
        headers={**bearer(submitter), "Content-Type": "application/json"},
    )
    await problem(response, 413)


async def test_unknown_article(api: Any, submitter: str) -> None:
    await problem(await api.get("/api/v1/articles/999", headers=bearer(submitter)), 404)


async def test_unknown_route_is_problem(api: Any) -> None:
    await problem(await api.get("/api/v1/nothing"), 404)
    response = await api.put("/api/v1/articles", json={})
    await problem(response, 405)


# --- categories ----------------------------------------------------------------------------------


async def test_categories(api: Any, admin: str, submitter: str) -> None:
    await problem(
        await api.post("/api/v1/categories", json=SEED["category"], headers=bearer(submitter)), 403
    )
    await create_category(api, admin)
    again = await api.post("/api/v1/categories", json=SEED["category"], headers=bearer(admin))
    assert "exists" in (await problem(again, 409))["detail"]
    bad = await api.post(
        "/api/v1/categories", json={"slug": "Tin Mới", "name": ""}, headers=bearer(admin)
    )
    assert {e["field"] for e in (await problem(bad, 422))["errors"]} == {"slug", "name"}
    reserved = await api.post(
        "/api/v1/categories", json={"slug": "feeds", "name": "Feeds"}, headers=bearer(admin)
    )
    await problem(reserved, 422)
    listing = await (await api.get("/api/v1/categories")).json()
    assert listing == [SEED["category"]]


# --- the vertical slice --------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_article_published_to_page_and_feeds(api: Any, site: Any, admin: str) -> None:
    await create_category(api, admin)
    article = text_only(SEED["article"])
    response = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert set(accepted) == {"id", "status", "links"}
    assert accepted["links"]["self"].endswith(f"/api/v1/articles/{accepted['id']}")
    body = await wait_status(api, admin, accepted["id"], "published")
    assert body["title"] == article["title"]
    assert body["published_at"].startswith("2022-01-12T01:16:46")  # stored in UTC
    assert body["views"] == 0 and body["images"] == []

    path = accepted["links"]["page"].removeprefix("http://bantin.test")
    page = await site.get(path)
    assert page.status == 200
    html = await page.text()
    assert article["title"] in html and "12/01/2022 08:16" in html
    assert "Tố Uyên - Văn phòng VKSND tỉnh" in html

    for fmt in ("rss", "atom"):
        for _ in range(100):
            feed = await site.get(f"/feeds/all.{fmt}")
            if feed.status == 200:
                parsed = feedparser.parse(await feed.read())
                if parsed.entries:
                    break
            await asyncio.sleep(0.05)
        assert not parsed.bozo, parsed.get("bozo_exception")
        title = parsed.entries[0].title
        assert unicodedata.normalize("NFC", title) == article["title"]
        assert parsed.entries[0].link == accepted["links"]["page"]


@pytest.mark.usefixtures("worker")
async def test_future_article_is_scheduled(api: Any, site: Any, admin: str) -> None:
    await create_category(api, admin)
    article = {**text_only(SEED["article"]), "published_at": "2099-01-01T08:00:00+07:00"}
    response = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    accepted = await response.json()
    await wait_status(api, admin, accepted["id"], "scheduled")
    path = accepted["links"]["page"].removeprefix("http://bantin.test")
    assert (await site.get(path)).status == 404


async def test_token_last_use_is_recorded(api: Any, submitter: str, clean: Any) -> None:
    import psycopg

    def last_used() -> Any:
        with psycopg.connect(clean.database_url) as conn:
            row = conn.execute("SELECT last_used_at FROM tokens WHERE name = 'test submitter'")
            return row.fetchone()[0]

    assert last_used() is None
    await api.get("/api/v1/articles/1", headers=bearer(submitter))
    first = last_used()
    assert first is not None
    await api.get("/api/v1/articles/1", headers=bearer(submitter))
    assert last_used() == first  # written at most once a minute, not on every call


# --- issue 22's defects and the first hour's messages --------------------------------------------


async def seeded(api: Any, admin: str, **changes: Any) -> dict[str, Any]:
    """A text article submitted by `admin` (its category created first): the 202 body."""
    if not await (await api.get("/api/v1/categories")).json():
        await create_category(api, admin)
    article = {**text_only(SEED["article"]), **changes}
    response = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert response.status == 202, await response.text()
    body: dict[str, Any] = await response.json()
    return body


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:00:00+00:00"]
)
async def test_publication_time_out_of_range_is_refused(api: Any, admin: str, when: str) -> None:
    await create_category(api, admin)
    article = {**text_only(SEED["article"]), "published_at": when}
    body = await problem(
        await api.post("/api/v1/articles", json=article, headers=bearer(admin)), 422
    )
    assert body["errors"] == [
        {
            "field": "published_at",
            "pointer": "/published_at",
            "message": "must be between the years 1900 and 2200",
        }
    ]
    accepted = await seeded(api, admin)
    url = f"/api/v1/articles/{accepted['id']}"
    before = await api.get(url, headers=bearer(admin))
    edit = await api.patch(
        url,
        json={"published_at": when},
        headers={**bearer(admin), "If-Match": before.headers["ETag"]},
    )
    await problem(edit, 422)
    after = await (await api.get(url, headers=bearer(admin))).json()
    assert after["published_at"] == (await before.json())["published_at"]  # nothing written


async def test_a_row_that_cannot_be_read_never_fails_a_page(
    api: Any, site: Any, admin: str, clean: Any
) -> None:
    """A publication time Python cannot hold, as a row written before the check: the article
    itself can still be read (and corrected), and every listing leaves it out."""
    import psycopg

    from shared import articles

    good = await seeded(api, admin)
    bad = await seeded(api, admin, title="Bài có ngày hỏng")
    with psycopg.connect(clean.database_url, autocommit=True) as conn:
        conn.execute("UPDATE articles SET status = 'published'")
        conn.execute(
            "UPDATE articles SET published_at = '0001-01-01 00:00:00+14' WHERE id = %s",
            (bad["id"],),
        )
    response = await api.get(f"/api/v1/articles/{bad['id']}", headers=bearer(admin))
    assert response.status == 200 and (await response.json())["published_at"] is None
    listing = await (await api.get("/api/v1/articles", headers=bearer(admin))).json()
    assert [item["id"] for item in listing["items"]] == [good["id"]]
    async with await psycopg.AsyncConnection.connect(
        clean.database_url, row_factory=psycopg.rows.dict_row
    ) as conn:
        latest = await articles.latest_published(conn)
    assert [a.id for a in latest] == [good["id"]]
    for path in ("/", f"/{SEED['category']['slug']}/"):
        assert (await site.get(path)).status == 200


DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/categories"),
        ("POST", "/api/v1/articles"),
        ("POST", "/api/v1/articles/batch"),
        ("PUT", "/api/v1/site"),
        ("PATCH", "/api/v1/articles/1"),
    ],
)
async def test_json_nested_a_thousand_deep_is_400(
    api: Any, admin: str, method: str, path: str
) -> None:
    await seeded(api, admin)
    headers = {**bearer(admin), "Content-Type": "application/json", "If-Match": '"1-1"'}
    body = await problem(await api.request(method, path, data=DEEP, headers=headers), 400)
    assert "not valid JSON" in body["detail"]


async def test_multipart_article_part_nested_a_thousand_deep_is_400(
    api: Any, submitter: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("article", DEEP.decode(), content_type="application/json")
    body = await problem(
        await api.post("/api/v1/articles", data=form, headers=bearer(submitter)), 400
    )
    assert "'article' part is not valid JSON" in body["detail"]


async def test_long_category_is_422(api: Any, submitter: str) -> None:
    article = {**text_only(SEED["article"]), "category": "a" * 10_001}
    body = await problem(
        await api.post("/api/v1/articles", json=article, headers=bearer(submitter)), 422
    )
    assert body["errors"][0]["field"] == "category"
    assert "at most 80" in body["errors"][0]["message"]


async def test_refusals_are_titled_by_what_was_refused(api: Any, admin: str) -> None:
    category = await api.post("/api/v1/categories", json={"name": ""}, headers=bearer(admin))
    assert (await problem(category, 422))["title"] == "Invalid category"
    site = await api.put("/api/v1/site", json={"link_blocks": 1}, headers=bearer(admin))
    assert (await problem(site, 422))["title"] == "Invalid site"
    article = await api.post("/api/v1/articles", json={}, headers=bearer(admin))
    assert (await problem(article, 422))["title"] == "Invalid article"


async def test_long_slug_is_told_its_limit(api: Any, admin: str) -> None:
    response = await api.post(
        "/api/v1/categories", json={"slug": "a" * 300, "name": "Tin"}, headers=bearer(admin)
    )
    (error,) = (await problem(response, 422))["errors"]
    assert error["field"] == "slug"
    assert error["message"] == "is too long (300 characters; at most 80)"


async def test_null_category_slug_is_refused(api: Any, admin: str) -> None:
    response = await api.post(
        "/api/v1/categories", json={"slug": None, "name": "Tin"}, headers=bearer(admin)
    )
    assert (await problem(response, 422))["errors"][0]["field"] == "slug"


async def test_body_that_sanitizes_to_nothing_is_422(api: Any, admin: str) -> None:
    await create_category(api, admin)
    article = {**text_only(SEED["article"]), "body": "<script>alert(1)</script><style></style>"}
    body = await problem(
        await api.post("/api/v1/articles", json=article, headers=bearer(admin)), 422
    )
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert "nothing left" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("header", "told"),
    [("24-2", 'ETags are quoted: send If-Match: "24-2"'), ("", "names no ETag")],
)
async def test_if_match_given_but_malformed_is_400(
    api: Any, admin: str, header: str, told: str
) -> None:
    accepted = await seeded(api, admin)
    url = f"/api/v1/articles/{accepted['id']}"
    for method in ("PATCH", "DELETE"):
        response = await api.request(
            method, url, json={"title": "Mới"}, headers={**bearer(admin), "If-Match": header}
        )
        assert told in (await problem(response, 400))["detail"]
    after = await (await api.get(url, headers=bearer(admin))).json()
    assert after["version"] <= 2 and after["status"] != "unpublished"  # the worker's, not ours


async def test_answers_are_utf8_not_escapes(api: Any, admin: str) -> None:
    await create_category(api, admin)
    listing = await api.get("/api/v1/categories")
    assert "Tin hoạt động".encode() in await listing.read()
    refused = await api.post("/api/v1/articles", json={"tiêu_đề": "x"}, headers=bearer(admin))
    raw = await refused.read()
    assert "tiêu_đề".encode() in raw and b"\\u" not in raw


# --- the listing --------------------------------------------------------------------------------


async def test_listing_pages_newest_first_with_an_opaque_cursor(
    api: Any, admin: str, submitter: str
) -> None:
    ids = [(await seeded(api, admin, title=f"Tin số {n}"))["id"] for n in range(5)]
    mine = (await seeded(api, submitter))["id"]
    seen, url = [], "/api/v1/articles?limit=2"
    while url:
        response = await api.get(url.removeprefix("http://127.0.0.1"), headers=bearer(admin))
        page = await response.json()
        assert response.status == 200 and len(page["items"]) <= 2
        assert all("body" not in item and item["views"] == 0 for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        url = page["next"] and "/" + page["next"].split("/", 3)[3]
    assert seen == [mine, *reversed(ids)]
    # A running worker may publish the article between two reads: read both until they agree.
    for _ in range(100):
        own = await (await api.get("/api/v1/articles", headers=bearer(submitter))).json()
        assert [item["id"] for item in own["items"]] == [mine] and own["next"] is None
        single = await (await api.get(f"/api/v1/articles/{mine}", headers=bearer(submitter))).json()
        if own["items"][0] == {k: v for k, v in single.items() if k != "body"}:
            break
        await asyncio.sleep(0.05)
    assert own["items"][0] == {k: v for k, v in single.items() if k != "body"}


async def test_listing_filters(api: Any, admin: str) -> None:
    await create_category(api, admin)
    other = {"slug": "thong-bao", "name": "Thông báo"}
    assert (await api.post("/api/v1/categories", json=other, headers=bearer(admin))).status == 201
    hoa = (await seeded(api, admin, title="Hội nghị hoà giải ở Thái Bình"))["id"]
    uy = (await seeded(api, admin, title="Uỷ ban nhân dân tỉnh", category="thong-bao"))["id"]

    async def found(query: str) -> list[int]:
        response = await api.get(f"/api/v1/articles?{query}", headers=bearer(admin))
        assert response.status == 200, await response.text()
        return [item["id"] for item in (await response.json())["items"]]

    assert await found("q=hòa giải") == [hoa]  # the other tone habit
    assert await found("q=hoa giai thai binh") == [hoa]  # without diacritics
    assert await found("q=ủy ban") == [uy]
    assert await found("q=nghi%25") == []  # wildcards are words, not patterns
    assert await found("category=thong-bao") == [uy]
    assert await found("status=unpublished") == []
    await api.delete(f"/api/v1/articles/{hoa}", headers=bearer(admin))
    assert await found("status=unpublished&category=tin-hoat-dong") == [hoa]
    assert await found("status=unpublished&category=thong-bao") == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=x",
        "status=done",
        "status=",
        "cursor=Zz!",
        "cursor=",
        "limit=",
        "page=2",
    ],
)
async def test_listing_refuses_bad_parameters(api: Any, submitter: str, query: str) -> None:
    response = await api.get(f"/api/v1/articles?{query}", headers=bearer(submitter))
    assert (await problem(response, 422))["errors"][0]["field"] == query.split("=")[0]


# --- the batch ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_batch_writes_the_valid_articles_and_answers_each_in_order(
    api: Any, admin: str
) -> None:
    await create_category(api, admin)
    good = text_only(SEED["article"])
    items = [
        {**good, "title": "Bài một"},
        {**good, "category": "khong-co"},
        {**good, "title": "Bài hai"},
        "not an object",
        {**good, "images": [{"part": "anh-1"}]},
    ]
    response = await api.post(
        "/api/v1/articles/batch", json={"articles": items}, headers=bearer(admin)
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["accepted"], body["refused"]) == (2, 3)
    results = body["results"]
    assert [set(r) >= {"id", "status", "links"} for r in results] == [
        True,
        False,
        True,
        False,
        False,
    ]
    assert results[1]["errors"][0]["field"] == "category"
    assert results[3]["errors"][0]["field"] == "article"
    assert "multipart" in results[4]["errors"][0]["message"]
    assert all(r["status"] == 422 for r in results if "errors" in r)
    for r in (results[0], results[2]):
        published = await wait_status(api, admin, r["id"], "published")
        assert published["links"] == r["links"]


async def test_batch_over_several_statements_keeps_each_article_with_its_answer(
    api: Any, admin: str, clean: Settings
) -> None:
    """Every answer's id is its own article's, across more articles than one INSERT takes,
    and each article's history says it was submitted."""
    from shared.articles import INSERT_ROWS

    await create_category(api, admin)
    good = text_only(SEED["article"])
    n = 2 * INSERT_ROWS + 7
    items = [{**good, "title": f"Bài số {i}", "body": f"Nội dung {i}."} for i in range(n)]
    items[INSERT_ROWS] = {"title": "x"}  # a refusal inside the second statement's range
    response = await api.post(
        "/api/v1/articles/batch", json={"articles": items}, headers=bearer(admin)
    )
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert "errors" in results[INSERT_ROWS]
    for i in (0, INSERT_ROWS - 1, INSERT_ROWS + 1, n - 1):
        answer = await api.get(f"/api/v1/articles/{results[i]['id']}", headers=bearer(admin))
        got = await answer.json()
        assert got["title"] == f"Bài số {i}", (i, got["title"])
    events = query(clean, "SELECT article_id, action FROM article_events ORDER BY article_id")
    accepted = [r["id"] for r in results if "id" in r]
    assert events == [{"article_id": i, "action": "submitted"} for i in sorted(accepted)]


async def test_batch_publishes_its_due_articles_and_tells_the_workers_once(
    quiet_ingest: Any, clean: Settings, admin: str
) -> None:
    """A batch's due articles are published by its own transaction and the one dated in the
    future is scheduled (beat's sweep publishes it on time); the workers get ONE message for
    the whole batch, site_changed with its category (pages and feeds stale once), not a
    task, a publication and a site change per article."""
    import redis as redis_lib
    from yarl import URL

    from shared.tasks import SITE_CHANGED

    api = quiet_ingest
    await create_category(api, admin)
    client = redis_lib.Redis.from_url(str(URL(clean.redis_url or "").with_path(f"/{QUIET_DB}")))
    client.delete("default")  # what the new category sent
    good = text_only(SEED["article"])
    items = [{**good, "title": f"Bài số {i}"} for i in range(5)]
    items.append({**good, "title": "Bài hẹn giờ", "published_at": "2099-01-01T00:00:00+07:00"})
    response = await api.post(
        "/api/v1/articles/batch", json={"articles": items}, headers=bearer(admin)
    )
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["published"] * 5 + ["scheduled"]
    sent = [json.loads(m)["headers"] for m in client.lrange("default", 0, -1)]
    client.close()
    slug = SEED["category"]["slug"]
    assert [(h["task"], h["argsrepr"]) for h in sent] == [(SITE_CHANGED, repr([[slug]]))]
    rows = query(clean, "SELECT status, count(*) AS n FROM articles GROUP BY status")
    assert sorted((r["status"], r["n"]) for r in rows) == [("published", 5), ("scheduled", 1)]


@pytest.mark.usefixtures("worker")
async def test_batch_article_dated_seconds_ahead_is_published_on_time(api: Any, admin: str) -> None:
    """A batch's article dated a few seconds ahead is scheduled, and the workers are told at
    once (a task for its exact time), not when beat's sweep next comes by."""
    from datetime import UTC, datetime, timedelta

    await create_category(api, admin)
    when = datetime.now(UTC) + timedelta(seconds=3)
    item = {**text_only(SEED["article"]), "published_at": when.isoformat()}
    response = await api.post(
        "/api/v1/articles/batch", json={"articles": [item]}, headers=bearer(admin)
    )
    assert response.status == 200, await response.text()
    [result] = (await response.json())["results"]
    assert result["status"] == "scheduled"
    published = await wait_status(api, admin, result["id"], "published")
    assert datetime.fromisoformat(published["published_at"]) == when


async def test_batch_article_dated_within_the_clock_allowance_is_published_at_once(
    api: Any, admin: str
) -> None:
    """An article dated half a second ahead is due (shared.articles.is_due, the one rule the
    batch, the import and the workers share): published by the batch with its own date, not
    scheduled for a sweep to publish a moment later."""
    from datetime import UTC, datetime, timedelta

    await create_category(api, admin)
    good = text_only(SEED["article"])
    when = datetime.now(UTC) + timedelta(seconds=0.5)
    items = [{**good, "title": "Bài ngay"}, {**good, "title": "Bài sát giờ"}]
    items[1]["published_at"] = when.isoformat()
    response = await api.post(
        "/api/v1/articles/batch", json={"articles": items}, headers=bearer(admin)
    )
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["published", "published"]
    got = await (
        await api.get(f"/api/v1/articles/{results[1]['id']}", headers=bearer(admin))
    ).json()
    assert datetime.fromisoformat(got["published_at"]) == when


def test_due_is_one_rule_at_the_edges_of_the_clock_allowance() -> None:
    from datetime import UTC, datetime, timedelta

    from shared.articles import CLOCK_ALLOWANCE, is_due

    now, tick = datetime.now(UTC), timedelta(microseconds=1)
    for ahead in (None, -timedelta(days=1), tick, CLOCK_ALLOWANCE, CLOCK_ALLOWANCE + tick):
        when = None if ahead is None else now + ahead
        assert is_due(when, now) is (ahead is None or ahead <= CLOCK_ALLOWANCE), ahead


async def test_batch_sent_again_with_its_key_is_answered_again(api: Any, admin: str) -> None:
    await create_category(api, admin)
    batch = {"articles": [text_only(SEED["article"]), {"title": "x"}]}
    headers = {**bearer(admin), "Idempotency-Key": "lo-1"}
    first = await api.post("/api/v1/articles/batch", json=batch, headers=headers)
    again = await api.post("/api/v1/articles/batch", json=batch, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    listing = await (await api.get("/api/v1/articles", headers=bearer(admin))).json()
    assert len(listing["items"]) == 1
    other = await api.post("/api/v1/articles/batch", json={"articles": [{}]}, headers=headers)
    await problem(other, 422)


async def test_batch_with_a_key_stores_refusals_that_quote_odd_keys(api: Any, admin: str) -> None:
    """A refusal names the client's own keys, NUL included: the answer kept for the
    Idempotency-Key must still be storable (PostgreSQL's jsonb refuses \\u0000)."""
    raw = b'{"articles": [{"\\u0005\\u0000": 1, "a/b~": 2}]}'
    headers = {**bearer(admin), "Idempotency-Key": "odd", "Content-Type": "application/json"}
    response = await api.post("/api/v1/articles/batch", data=raw, headers=headers)
    assert response.status == 200, await response.text()
    errors = (await response.json())["results"][0]["errors"]
    assert {(e["field"], e["pointer"]) for e in errors} >= {
        ("\\x05\\x00", "/\\x05\\x00"),
        ("a/b~", "/a~1b~0"),
    }


@pytest.mark.parametrize(
    "payload",
    [{"articles": []}, {"articles": [{}] * 501}, {"items": []}, [], {"articles": {}}],
)
async def test_batch_refuses_a_wrong_envelope(api: Any, admin: str, payload: Any) -> None:
    response = await api.post("/api/v1/articles/batch", json=payload, headers=bearer(admin))
    await problem(response, 422)


# --- the README ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_readme_api_examples_run_as_written(
    api: Any, admin: str, base_env: dict[str, str], tmp_path: Any
) -> None:
    """The shell blocks of the README's API section, run by bash against the service (the
    only change: API names this test's server), in a folder that has the repository's
    `bantin/` and `.venv/` as `make run`'s folder does, the demo's category created first as
    `make run` does. Every curl must get a 2xx."""
    import os
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme.split("## The submitters' API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 3
    script = "\n".join(blocks)
    assert "API=http://127.0.0.1:8081\n" in script
    script = script.replace(
        "API=http://127.0.0.1:8081\n", f"API={str(api.make_url('')).rstrip('/')}\n"
    )
    await create_category(api, admin)
    for name in ("bantin", ".venv"):
        (tmp_path / name).symlink_to(root / name)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "bash",
            "-c",
            'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n' + script,
        ],
        cwd=tmp_path,
        env={**os.environ, **base_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"title":"Tiêu đề mới"' in done.stdout and '"status":"unpublished"' in done.stdout
    assert '"accepted":1,"refused":1' in done.stdout
    # The worker finishes what the examples sent (seven photos) before the next test empties
    # the database and the media store under it.
    listing = await (await api.get("/api/v1/articles", headers=bearer(admin))).json()
    for item in listing["items"]:
        for _ in range(1200):
            status = (
                await (
                    await api.get(f"/api/v1/articles/{item['id']}", headers=bearer(admin))
                ).json()
            )["status"]
            if status != "processing":
                break
            await asyncio.sleep(0.1)
        assert status != "processing", f"article {item['id']} still processing"
