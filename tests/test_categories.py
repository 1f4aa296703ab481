"""Categories over the API, against real services: rename, reorder, retire (with or without a
redirect), bring back and delete, every refusal with its problem, and what a retired category
means for readers (menus, home, sitemap, its page and feeds) and for new articles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.publisher import cache as cache_module
from shared.feeds import stored as stored_feeds
from shared.settings import Settings
from tests.conftest import PUBLIC_URL, reset
from tests.desk_helpers import article_form, hidden_fields, make_account, sign_in
from tests.fixtures.moving import Post, bantin, query, write, wxr
from tests.test_api import bearer, problem
from tests.test_site import page, publish, short
from tests.test_templates import parse_html, text_of

Client = Any
CATEGORIES = [
    {"slug": "tin-hoat-dong", "name": "Tin hoạt động"},
    {"slug": "van-ban", "name": "Văn bản"},
    {"slug": "tin-cu", "name": "Tin cũ"},
]


async def make_categories(api: Client, admin: str) -> None:
    for category in CATEGORIES:
        created = await api.post("/api/v1/categories", json=category, headers=bearer(admin))
        assert created.status == 201, await created.text()


async def listing(api: Client) -> list[str]:
    return [c["slug"] for c in await (await api.get("/api/v1/categories")).json()]


async def patch(api: Client, token: str, slug: str, body: Any) -> Any:
    return await api.patch(f"/api/v1/categories/{slug}", json=body, headers=bearer(token))


async def changed(api: Client, admin: str, slug: str, body: Any) -> dict[str, Any]:
    response = await patch(api, admin, slug, body)
    assert response.status == 200, await response.text()
    found: dict[str, Any] = await response.json()
    return found


def fields(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body["errors"]}


# --- who may --------------------------------------------------------------------------------------


async def test_only_admins_change_or_delete(api: Client, admin: str, submitter: str) -> None:
    await make_categories(api, admin)
    for method in ("patch", "delete"):
        call = getattr(api, method)
        url = "/api/v1/categories/van-ban"
        await problem(await call(url, json={"name": "X"}), 401)
        refused = await problem(await call(url, json={"name": "X"}, headers=bearer(submitter)), 403)
        assert "admin" in refused["detail"]
    assert await listing(api) == [c["slug"] for c in CATEGORIES]  # nothing changed
    assert (await (await api.get("/api/v1/categories")).json())[1]["name"] == "Văn bản"


async def test_unknown_category_is_404(api: Client, admin: str) -> None:
    for response in (
        await patch(api, admin, "khong-co", {"name": "Mới"}),
        await patch(api, admin, "khong-co", {}),  # 404 before the body's own errors
        await api.delete("/api/v1/categories/khong-co", headers=bearer(admin)),
        await api.delete("/api/v1/categories/Kh%C3%B4ng", headers=bearer(admin)),
    ):
        body = await problem(response, 404)
        assert body["type"].endswith("category-not-found")


# --- rename and reorder ---------------------------------------------------------------------------


async def test_rename_and_reorder(api: Client, admin: str) -> None:
    await make_categories(api, admin)
    renamed = await changed(api, admin, "van-ban", {"name": "  Văn bản chỉ đạo  "})
    assert renamed == {"slug": "van-ban", "name": "Văn bản chỉ đạo"}  # cleaned; slug kept
    assert await changed(api, admin, "tin-cu", {"position": 1}) == {
        "slug": "tin-cu",
        "name": "Tin cũ",
    }
    assert await listing(api) == ["tin-cu", "tin-hoat-dong", "van-ban"]
    await changed(api, admin, "tin-cu", {"position": 999})  # past the end: last
    assert await listing(api) == ["tin-hoat-dong", "van-ban", "tin-cu"]
    await changed(api, admin, "van-ban", {"position": 1, "name": "Văn bản"})
    assert await listing(api) == ["van-ban", "tin-hoat-dong", "tin-cu"]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "category", "nothing to change"),
        ({"name": None}, "category", "nothing to change"),
        ({"name": "   "}, "name", "blank"),
        ({"name": "x" * 101}, "name", "too long"),
        ({"position": 0}, "position", "at least 1"),
        ({"position": "1"}, "position", "whole number"),
        ({"retired": "yes"}, "retired", "true or false"),
        ({"redirect_to": "van-ban"}, "redirect_to", '"retired": true'),
        ({"retired": False, "redirect_to": "van-ban"}, "redirect_to", '"retired": true'),
        ({"retired": True, "redirect_to": "tin-cu"}, "redirect_to", "another category"),
        ({"retired": True, "redirect_to": "Văn bản"}, "redirect_to", "lowercase"),
        ({"retired": True, "redirect_to": "khong-co"}, "redirect_to", "unknown category"),
        ({"slug": "moi"}, "slug", "unknown field"),
    ],
)
async def test_bad_changes_are_422_and_change_nothing(
    api: Client, admin: str, body: dict[str, Any], field: str, says: str
) -> None:
    await make_categories(api, admin)
    refused = await problem(await patch(api, admin, "tin-cu", body), 422)
    assert says in fields(refused)[field], refused
    assert await (await api.get("/api/v1/categories")).json() == CATEGORIES


async def test_not_json_is_refused(api: Client, admin: str) -> None:
    await make_categories(api, admin)
    url = "/api/v1/categories/tin-cu"
    plain = await api.patch(url, data="x", headers={**bearer(admin), "Content-Type": "text/plain"})
    await problem(plain, 415)
    json_type = {**bearer(admin), "Content-Type": "application/json"}
    await problem(await api.patch(url, data=b"{", headers=json_type), 400)
    await problem(await api.patch(url, data=b"[]", headers=json_type), 422)


# --- retire ---------------------------------------------------------------------------------------


async def test_retire_redirect_and_bring_back(api: Client, admin: str) -> None:
    await make_categories(api, admin)
    retired = await changed(api, admin, "tin-cu", {"retired": True, "redirect_to": "van-ban"})
    assert retired["redirect_to"] == "van-ban" and retired["retired_at"]
    assert await listing(api) == ["tin-hoat-dong", "van-ban"]  # what submitters may use
    # A retired category is no target, and has no place in the menu.
    to_retired = await patch(api, admin, "van-ban", {"retired": True, "redirect_to": "tin-cu"})
    assert "retired too" in fields(await problem(to_retired, 422))["redirect_to"]
    placed = await patch(api, admin, "tin-cu", {"position": 1})
    assert "no place in the menu" in fields(await problem(placed, 422))["position"]
    # Retiring the target sends the first one's readers on to the new target: no chains.
    await changed(api, admin, "van-ban", {"retired": True, "redirect_to": "tin-hoat-dong"})
    chained = await changed(api, admin, "tin-cu", {"name": "Tin cũ"})
    assert chained["redirect_to"] == "tin-hoat-dong"
    # Retired without a target: its page answers 410.
    gone = await changed(api, admin, "tin-cu", {"retired": True})
    assert gone["redirect_to"] is None
    back = await changed(api, admin, "tin-cu", {"retired": False})
    assert back == {"slug": "tin-cu", "name": "Tin cũ"}
    assert await listing(api) == ["tin-hoat-dong", "tin-cu"]  # at the end of the menu
    await changed(api, admin, "van-ban", {"retired": False, "position": 1})
    assert await listing(api) == ["van-ban", "tin-hoat-dong", "tin-cu"]


async def test_retired_category_takes_no_new_articles(api: Client, admin: str) -> None:
    await make_categories(api, admin)
    article = short("Hội nghị tổng kết", "Nội dung.", category="tin-cu")
    posted = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert posted.status == 202, await posted.text()
    before = await posted.json()
    await changed(api, admin, "tin-cu", {"retired": True, "redirect_to": "van-ban"})

    single = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    message = fields(await problem(single, 422))["category"]
    assert "retired" in message and "'van-ban'" in message
    batch = await api.post(
        "/api/v1/articles/batch",
        json={"articles": [article, {**article, "category": "van-ban"}]},
        headers=bearer(admin),
    )
    assert batch.status == 200, await batch.text()
    results = await batch.json()
    assert results["accepted"] == 1 and results["refused"] == 1
    assert "retired" in results["results"][0]["errors"][0]["message"]
    assert results["results"][1]["status"] == "published"

    # An article already there may still be corrected where it is...
    url = f"/api/v1/articles/{before['id']}"
    edited = await patch_current(api, admin, url, {"title": "Hội nghị tổng kết năm"})
    assert edited.status == 200, await edited.text()
    assert (await edited.json())["category"] == "tin-cu"
    # ...but none moves into it.
    other = results["results"][1]["id"]
    moved = await patch_current(api, admin, f"/api/v1/articles/{other}", {"category": "tin-cu"})
    assert "retired" in fields(await problem(moved, 422))["category"]
    # Brought back, it takes articles again.
    await changed(api, admin, "tin-cu", {"retired": False})
    again = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert again.status == 202, await again.text()


async def patch_current(api: Client, token: str, url: str, body: dict[str, Any]) -> Any:
    """PATCH with the article's current ETag, read again when a running worker (the suite's, on
    a shared Redis) published it in between (412), as a client of the API would."""
    for _ in range(20):
        current = await api.get(url, headers=bearer(token))
        answer = await api.patch(
            url, json=body, headers={**bearer(token), "If-Match": current.headers["ETag"]}
        )
        if answer.status != 412:
            return answer
    raise AssertionError(f"{url} kept changing under 20 edits")


# --- delete ---------------------------------------------------------------------------------------


async def test_delete_only_what_nothing_needs(api: Client, admin: str) -> None:
    await make_categories(api, admin)
    article = short("Hội nghị tổng kết", "Nội dung.", category="van-ban")
    posted = await api.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert posted.status == 202, await posted.text()

    with_articles = await api.delete("/api/v1/categories/van-ban", headers=bearer(admin))
    refused = await problem(with_articles, 409)
    assert refused["type"].endswith("/category-has-articles")
    assert "retire it" in refused["detail"] and "move its articles" in refused["detail"]
    assert refused["articles"] == 1
    # The article is untouched, and so is its category.
    got = await api.get(f"/api/v1/articles/{(await posted.json())['id']}", headers=bearer(admin))
    assert got.status == 200 and (await got.json())["category"] == "van-ban"
    assert "van-ban" in await listing(api)

    await changed(api, admin, "van-ban", {"retired": True, "redirect_to": "tin-cu"})
    target = await api.delete("/api/v1/categories/tin-cu", headers=bearer(admin))
    assert (await problem(target, 409))["type"].endswith("/category-is-redirect-target")

    empty = await api.delete("/api/v1/categories/tin-hoat-dong", headers=bearer(admin))
    assert empty.status == 204
    assert await listing(api) == ["tin-cu"]
    gone = await api.delete("/api/v1/categories/tin-hoat-dong", headers=bearer(admin))
    await problem(gone, 404)
    # The slug is free again.
    again = await api.post("/api/v1/categories", json=CATEGORIES[0], headers=bearer(admin))
    assert again.status == 201


# --- readers --------------------------------------------------------------------------------------


def menu(html: str) -> list[str]:
    nav = parse_html(html).find(".//nav")
    return [a.get("href") for a in nav.iter("a")]


@pytest.mark.usefixtures("worker")
async def test_readers_never_see_a_retired_category(
    api: Client, site: Client, admin: str, clean: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "LIVE_SECONDS", 0.0)  # a new site version seen at once
    monkeypatch.setattr(stored_feeds, "FRESH_SECONDS", 0.0)  # a dropped feed too
    await make_categories(api, admin)
    kept = await publish(api, admin, short("Tin giữ lại", "Nội dung.", category="van-ban"))
    old = await publish(api, admin, short("Tin chuyên mục cũ", "Nội dung.", category="tin-cu"))
    _, home = await page(site, "/")
    assert "/tin-cu/" in menu(home) and "Tin chuyên mục cũ" in home
    await page(site, "/tin-cu/")
    await page(site, "/feeds/tin-cu.rss")

    await changed(api, admin, "tin-cu", {"retired": True})
    _, home = await page(site, "/")
    assert "/tin-cu/" not in menu(home) and "/van-ban/" in menu(home)
    assert "Tin chuyên mục cũ" not in home  # no home section either
    assert "Tin giữ lại" in home
    response, gone = await page(site, "/tin-cu/", 410)
    assert response.content_type == "text/html"
    assert text_of(parse_html(gone).find(".//h1")) == "Chuyên mục đã ngừng"
    for fmt in ("rss", "atom", "json"):
        _, text = await page(site, f"/feeds/tin-cu.{fmt}", 410)
        assert "Chuyên mục đã ngừng" in text
    await page(site, "/feeds/tin-cu.rss?page=2", 410)
    _, sitemap = await page(site, "/sitemap.xml")
    assert f"<loc>{PUBLIC_URL}/tin-cu/</loc>" not in sitemap
    assert f"<loc>{PUBLIC_URL}/van-ban/</loc>" in sitemap
    # Its articles stay readable where they are.
    await page(site, old["links"]["page"].removeprefix(PUBLIC_URL))
    await page(site, kept["links"]["page"].removeprefix(PUBLIC_URL))

    await changed(api, admin, "tin-cu", {"retired": True, "redirect_to": "van-ban"})
    moved, _ = await page(site, "/tin-cu/", 301)
    assert moved.headers["Location"] == "/van-ban/"
    moved, _ = await page(site, "/tin-cu/?page=2", 301)
    assert moved.headers["Location"] == "/van-ban/"
    moved, _ = await page(site, "/feeds/tin-cu.atom", 301)
    assert moved.headers["Location"] == "/feeds/van-ban.atom"

    await changed(api, admin, "tin-cu", {"retired": False})
    _, back = await page(site, "/tin-cu/")
    assert "Tin chuyên mục cũ" in back
    await page(site, "/feeds/tin-cu.rss")


# --- the desk -------------------------------------------------------------------------------------

DESK = "/desk/trang-web/chuyen-muc"


def field_message(html: str, element_id: str) -> str:
    """The message beside a field (its aria-describedby), as the page shows it."""
    doc = parse_html(html)
    field = doc.find(f".//*[@id='{element_id}']")
    assert field is not None, element_id
    assert field.get("aria-invalid") == "true", element_id
    message = doc.find(f".//*[@id='{field.get('aria-describedby')}']")
    return text_of(message)


async def test_desk_categories_through_the_api_rules(
    api: Client, aiohttp_client: Any, admin: str, clean: Settings
) -> None:
    desk = api  # the desk is served by ingest, beside the API
    await make_categories(api, admin)
    await make_account(clean, "quantri", "admin")
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(desk, "quantri")
    ids = {c: n for n, c in enumerate([c["slug"] for c in CATEGORIES], 1)}
    posted = await api.post(
        "/api/v1/articles",
        json=short("Hội nghị", "Nội dung.", category="van-ban"),
        headers=bearer(admin),
    )
    assert posted.status == 202

    created = await desk.post(DESK, data={"csrf": csrf, "name": "Thông báo", "slug": ""})
    assert created.status == 200 and "Đã tạo chuyên mục “Thông báo”" in await created.text()
    reserved = await desk.post(DESK, data={"csrf": csrf, "name": "Trang API", "slug": "api"})
    assert reserved.status == 422
    html = await reserved.text()
    assert "dành riêng" in field_message(html, "new-slug")
    assert 'value="Trang API"' in html  # what was typed comes back
    taken = await desk.post(DESK, data={"csrf": csrf, "name": "Văn bản", "slug": ""})
    assert taken.status == 409 and "Đã có chuyên mục" in await taken.text()

    blank = await desk.post(f"{DESK}/doi-ten", data={"csrf": csrf, "slug": "van-ban", "name": " "})
    assert blank.status == 422
    assert "Hãy nhập tên" in field_message(await blank.text(), f"cat-{ids['van-ban']}-name")
    renamed = await desk.post(
        f"{DESK}/doi-ten", data={"csrf": csrf, "slug": "van-ban", "name": "Văn bản mới"}
    )
    assert renamed.status == 200
    moved = await desk.post(
        f"{DESK}/thu-tu",
        data={"csrf": csrf, "slug": "thong-bao", "to": "up"},
        allow_redirects=False,
    )
    assert moved.status == 303
    assert await listing(api) == ["tin-hoat-dong", "van-ban", "thong-bao", "tin-cu"]

    has_articles = await desk.post(f"{DESK}/xoa", data={"csrf": csrf, "slug": "van-ban"})
    assert has_articles.status == 409
    html = await has_articles.text()
    assert "còn 1 bài viết nên không xóa được" in html and "ngừng chuyên mục" in html
    assert "van-ban" in await listing(api)

    retired = await desk.post(
        f"{DESK}/ngung", data={"csrf": csrf, "slug": "van-ban", "redirect_to": "tin-hoat-dong"}
    )
    assert retired.status == 200, await retired.text()
    html = await retired.text()
    assert "Đã ngừng chuyên mục “Văn bản mới”" in html and "Chuyên mục đã ngừng" in html
    assert "van-ban" not in await listing(api)
    to_retired = await desk.post(
        f"{DESK}/ngung", data={"csrf": csrf, "slug": "tin-cu", "redirect_to": "van-ban"}
    )
    assert to_retired.status == 422
    message = field_message(await to_retired.text(), f"cat-{ids['tin-cu']}-redirect")
    assert "chuyên mục đang dùng khác" in message
    # Its article may still be edited where it is: the form keeps its category.
    article = (await posted.json())["id"]
    form_html = await (await desk.get(f"/desk/bai-viet/{article}/sua")).text()
    assert re.search(r'<option value="van-ban"[^>]* selected', form_html), form_html
    edited = {
        **hidden_fields(form_html),
        "title": "Hội nghị (đã sửa)",
        "category": "van-ban",
        "summary": "",
        "body": "<p>Nội dung.</p>",
        "author": "Phóng viên",
        "unit": "",
        "published_at": "",
    }
    saved = await desk.post(f"/desk/bai-viet/{article}/sua", data=edited, allow_redirects=False)
    assert saved.status == 303, await saved.text()
    got = await api.get(f"/api/v1/articles/{article}", headers=bearer(admin))
    assert (await got.json())["title"] == "Hội nghị (đã sửa)"
    new_form = await (await desk.get("/desk/bai-viet/moi")).text()
    assert 'value="van-ban"' not in new_form  # and no new article can choose it
    # A retired category's readers can be sent elsewhere.
    repointed = await desk.post(
        f"{DESK}/ngung", data={"csrf": csrf, "slug": "van-ban", "redirect_to": "tin-cu"}
    )
    assert repointed.status == 200
    assert "người đọc được chuyển tới /tin-cu/" in await repointed.text()

    # A new article in the retired category, from the desk: refused beside the field.
    from services.ingest.app import create_app

    writer = await aiohttp_client(create_app(clean))
    form = article_form(
        await sign_in(writer, "vanphong"),
        {
            "title": "Bài mới",
            "category": "van-ban",
            "summary": "Tóm tắt giữ lại.",
            "body": "<p>Nội dung.</p>",
            "author": "",
            "unit": "",
            "published_at": "",
        },
        [],
    )
    refused = await writer.post("/desk/bai-viet/moi", data=form)
    assert refused.status == 422
    html = await refused.text()
    assert "đã ngừng, không nhận bài mới" in html and "Tóm tắt giữ lại." in html

    restored = await desk.post(f"{DESK}/dung-lai", data={"csrf": csrf, "slug": "van-ban"})
    assert restored.status == 200 and "van-ban" in await listing(api)
    deleted = await desk.post(f"{DESK}/xoa", data={"csrf": csrf, "slug": "thong-bao"})
    assert deleted.status == 200 and "Đã xóa chuyên mục" in await deleted.text()
    assert "thong-bao" not in await listing(api)
    gone = await desk.post(f"{DESK}/xoa", data={"csrf": csrf, "slug": "thong-bao"})
    assert gone.status == 404 and "không còn nữa" in await gone.text()


async def test_desk_category_forms_need_csrf_and_an_admin(
    api: Client, aiohttp_client: Any, admin: str, clean: Settings
) -> None:
    await make_categories(api, admin)
    await make_account(clean, "quantri", "admin")
    await sign_in(api, "quantri")
    forms = {
        DESK: {"name": "Mới"},
        f"{DESK}/doi-ten": {"slug": "tin-cu", "name": "Đổi"},
        f"{DESK}/thu-tu": {"slug": "tin-cu", "to": "up"},
        f"{DESK}/ngung": {"slug": "tin-cu", "redirect_to": ""},
        f"{DESK}/dung-lai": {"slug": "tin-cu"},
        f"{DESK}/xoa": {"slug": "tin-cu"},
    }
    for url, data in forms.items():
        for csrf in ({}, {"csrf": "gia-mao"}):
            response = await api.post(url, data={**data, **csrf})
            assert response.status == 403, url
            assert "chưa được thực hiện" in await response.text()
    assert await (await api.get("/api/v1/categories")).json() == CATEGORIES

    from services.ingest.app import create_app

    other = await aiohttp_client(create_app(clean))
    await make_account(clean, "vanphong", "submitter")
    csrf = await sign_in(other, "vanphong")
    assert (await other.get("/desk/trang-web/")).status == 403
    for url, data in forms.items():
        response = await other.post(url, data={**data, "csrf": csrf})
        assert response.status == 403, url
        assert "không có quyền" in await response.text()
    assert await (await api.get("/api/v1/categories")).json() == CATEGORIES


# --- moving: importers, export and restore --------------------------------------------------------

RETIRED = (
    "SELECT c.slug, c.name, c.position, c.retired_at IS NOT NULL AS retired, t.slug AS redirect_to"
    " FROM categories c LEFT JOIN categories t ON t.id = c.redirect_to ORDER BY c.slug"
)


async def test_importers_never_fill_a_retired_category_and_restore_keeps_them(
    api: Client, admin: str, clean: Settings, tmp_path: Path
) -> None:
    await make_categories(api, admin)
    await changed(api, admin, "tin-cu", {"retired": True, "redirect_to": "tin-hoat-dong"})
    await changed(api, admin, "van-ban", {"retired": True})  # 410: nowhere to send
    posts = [
        Post(1, "Tin của chuyên mục cũ", "Nội dung một.", category=("tin-cu", "Tin cũ")),
        Post(2, "Văn bản cũ", "Nội dung hai.", category=("van-ban", "Văn bản")),
        Post(3, "Tin mới", "Nội dung ba.", category=("tin-hoat-dong", "Tin hoạt động")),
    ]
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "wp.xml", wxr(posts))))
    said = ran.out + ran.err
    assert ran.code == 0, said
    assert "imported 2" in said and "skipped 1" in said
    assert "  2: category 'van-ban' is retired" in said  # the post, named by its id
    placed = query(
        clean,
        "SELECT a.title, c.slug FROM articles a JOIN categories c ON c.id = a.category_id"
        " ORDER BY a.title",
    )
    assert placed == [
        {"title": "Tin của chuyên mục cũ", "slug": "tin-hoat-dong"},  # where its readers go
        {"title": "Tin mới", "slug": "tin-hoat-dong"},
    ]
    before = query(clean, RETIRED)
    assert [(c["slug"], c["retired"], c["redirect_to"]) for c in before] == [
        ("tin-cu", True, "tin-hoat-dong"),
        ("tin-hoat-dong", False, None),
        ("van-ban", True, None),
    ]

    folder = tmp_path / "backup"
    ran = await bantin(clean, "export", str(folder))
    assert ran.code == 0, ran.out + ran.err
    reset(clean)  # a new, empty site
    ran = await bantin(clean, "import", "bantin", str(folder))
    assert ran.code == 0, ran.out + ran.err
    assert query(clean, RETIRED) == before
    again = await api.post(
        "/api/v1/articles",
        json=short("Bài mới", "Nội dung.", category="tin-cu"),
        headers=bearer(admin),
    )
    assert "retired" in fields(await problem(again, 422))["category"]
