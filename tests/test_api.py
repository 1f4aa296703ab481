"""The submitters' API against real PostgreSQL, Redis and a real Celery worker."""

from __future__ import annotations

import asyncio
import io
import json
import unicodedata
from typing import Any

import feedparser
import pytest

from bantin.bootstrap import demo_seed, text_only

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
