"""The readers' site for real: the seed article published through the API with its photos by
a real worker, then every page part, search across Vietnamese spellings, related news, caching
with ETags, sitemaps, robots.txt and the admins' link blocks."""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any
from xml.etree.ElementTree import Element

import psycopg
import pytest
import redis as redis_lib
from lxml import etree

from bantin.bootstrap import demo_seed, text_only
from services.publisher import cache as cache_module
from services.publisher import pages, queries, sitemap
from services.publisher.views import cache_key
from shared import keys
from shared.counting.record import hits_key
from shared.settings import Settings
from shared.web import pool_key
from tests.conftest import PUBLIC_URL, publisher
from tests.photos import multipart
from tests.test_api import bearer, create_category, problem, wait_status
from tests.test_submissions import seed_photos
from tests.test_templates import parse_html, text_of

SEED = demo_seed()
ARTICLE = SEED["article"]
Client = Any
SITEMAP_NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
LINK_BLOCKS = [
    {
        "title": "Liên kết website",
        "links": [
            {"title": "VKSND tối cao", "url": "https://vksndtc.gov.vn/"},
            {"title": "Cổng TTĐT tỉnh Thái Bình", "url": "https://thaibinh.gov.vn"},
        ],
    },
    {
        "title": "Phần mềm quản lý",
        "links": [{"title": "Quản lý văn bản", "url": "http://qlvb.thaibinh.gov.vn/vbden"}],
    },
]


# --- helpers -------------------------------------------------------------------------------------


def local(url: str) -> str:
    return url.removeprefix(PUBLIC_URL)


async def publish(api: Client, token: str, article: dict[str, Any], **changes: Any) -> Any:
    """Submit as JSON and wait for the worker to publish; returns the API's article."""
    response = await api.post(
        "/api/v1/articles", json={**article, **changes}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    return await wait_status(api, token, accepted["id"], "published")


async def publish_seed(api: Client, token: str) -> Any:
    """The seed article as a newsroom sends it: multipart, three inline photos, four in the
    gallery."""
    response = await api.post(
        "/api/v1/articles", data=multipart(ARTICLE, seed_photos()), headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    accepted = await response.json()
    return await wait_status(api, token, accepted["id"], "published")


def short(title: str, body: str, summary: str = "", **extra: Any) -> dict[str, Any]:
    """A small article of the seed's category, with text of its own."""
    return {
        "title": title,
        "category": ARTICLE["category"],
        "summary": summary,
        "body": f"<p>{body}</p>",
        "author": "Phóng viên",
        **extra,
    }


async def page(site: Client, path: str, status: int = 200, **kwargs: Any) -> tuple[Any, str]:
    response = await site.get(path, allow_redirects=False, **kwargs)
    text = await response.text()
    assert response.status == status, text[:2000]
    return response, text


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


def main_links(doc: Element) -> list[str]:
    return [a.get("href") for a in doc.find(".//main").iter("a") if a.get("class") == "card-link"]


def ids_of(hrefs: list[str]) -> list[int]:
    return [int(h.rsplit("-", 1)[1]) for h in hrefs]


async def search_ids(site: Client, q: str) -> tuple[list[int], str]:
    _, html = await page(site, "/search", params={"q": q})
    return ids_of(main_links(parse_html(html))), html


@pytest.fixture
def r(clean: Settings) -> Any:
    client = redis_lib.Redis.from_url(clean.require_backends()[1])
    yield client
    client.close()


@pytest.fixture
async def site_with(aiohttp_client: Any, clean: Settings) -> Callable[..., Awaitable[Client]]:
    async def make(**changes: Any) -> Client:
        return await publisher(aiohttp_client, clean.with_(**changes))

    return make


async def put_links(api: Client, admin: str, blocks: Any = LINK_BLOCKS, **headers: str) -> Any:
    return await api.put(
        "/api/v1/site", json={"link_blocks": blocks}, headers={**bearer(admin), **headers}
    )


# --- the article page ----------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_article_page_has_every_part_of_the_seed_page(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    assert (await put_links(api, admin)).status == 200
    other = await publish(
        api, admin, short("Viện kiểm sát nhân dân tỉnh Thái Bình tập huấn nghiệp vụ", "Tập huấn.")
    )
    seed = await publish_seed(api, admin)
    path = local(seed["links"]["page"])
    response, html = await page(site, path)
    assert response.content_type == "text/html" and response.charset == "utf-8"
    doc = parse_html(html)  # strict: any parse error fails
    assert doc.get("lang") == "vi"
    main = doc.find(".//main")

    # Category, title, time the Vietnamese way in the site's zone, lead.
    kicker = main.find(".//p[@class='kicker']/a")
    assert (kicker.get("href"), text_of(kicker)) == ("/tin-hoat-dong/", "Tin hoạt động")
    assert text_of(main.find(".//h1")) == ARTICLE["title"]
    when = main.find(".//p[@class='article-meta']/time")
    assert text_of(when) == "12/01/2022 08:16"
    assert when.get("datetime").startswith("2022-01-12T01:16:46")
    assert text_of(main.find(".//p[@class='lead']")) == ARTICLE["summary"]

    # The body's three photos in place, each with its caption, then the gallery with its title.
    body = main.find(".//div[@class='article-body']")
    captions = [text_of(f) for f in body.iter("figcaption")]
    assert captions == [i["caption"].replace("\xa0", " ") for i in ARTICLE["images"][:3]]
    assert "thực hiện thắng lợi nhiệm vụ kép" in text_of(body)
    gallery = main.find(".//section[@class='gallery']")
    assert text_of(gallery.find("h2")) == ARTICLE["gallery_title"]
    assert len(gallery.findall(".//figure")) == 4
    pictures = list(main.iter("picture"))
    assert len(pictures) == len(list(main.iter("img"))) == 7
    for picture in pictures:
        img = picture.find("img")
        assert img.get("src").startswith("/media/") and img.get("width") and img.get("height")
        photo = await site.get(img.get("src"))
        assert photo.status == 200 and photo.content_type == "image/jpeg"
        for source in picture.iter("source"):
            first = source.get("srcset").split(",")[0].split()[0]
            assert (await site.get(first)).status == 200

    # Byline, related news, and the sidebar: link blocks and live statistics.
    assert text_of(main.find(".//p[@class='byline']")) == "Tố Uyên - Văn phòng VKSND tỉnh"
    related = main.find(".//section[@class='related']")
    assert text_of(related.find("h2")) == "Tin liên quan"
    assert [a.get("href") for a in related.iter("a")] == [local(other["links"]["page"])]
    aside = doc.find(".//aside")
    titles = [text_of(h) for h in aside.iter("h2")]
    assert titles == ["Liên kết website", "Phần mềm quản lý", "Thống kê"]
    links = {text_of(a): a.get("href") for a in aside.iter("a")}
    assert links["VKSND tối cao"] == "https://vksndtc.gov.vn/"
    assert links["Quản lý văn bản"] == "http://qlvb.thaibinh.gov.vn/vbden"
    stats = text_of(aside.find(".//ul[@class='stats-list']"))
    assert re.fullmatch(r"Khách online: \d+ Tổng số truy cập: \d+", stats), stats
    assert "__BANTIN" not in html

    # What search engines and link previews read.
    head = doc.find("head")
    canonical = head.find("link[@rel='canonical']").get("href")
    assert canonical == seed["links"]["page"]
    og = {m.get("property"): m.get("content") for m in head.iter("meta") if m.get("property")}
    assert og["og:type"] == "article" and og["og:title"].startswith(ARTICLE["title"])
    assert og["og:url"] == canonical and og["og:locale"] == "vi_VN"
    assert og["og:image"].startswith(PUBLIC_URL + "/media/")  # no cover: the first photo
    ld = json.loads(
        next(s for s in head.iter("script") if s.get("type") == "application/ld+json").text
    )
    assert ld["@type"] == "NewsArticle" and ld["headline"] == ARTICLE["title"]
    assert ld["datePublished"].startswith("2022-01-12T01:16:46")
    assert ld["author"] == {"@type": "Person", "name": "Tố Uyên"}
    assert ld["image"] == [og["og:image"]] and ld["mainEntityOfPage"] == canonical
    assert not any(
        (el.get("src") or el.get("href") or "").startswith(("http://", "https://", "//"))
        for el in doc.iter()
        if el.tag in ("script", "link", "img", "source") and el.get("rel") != "canonical"
    ), "no asset from another site (no CDN)"


@pytest.mark.usefixtures("worker")
async def test_slug_change_answers_301_to_the_canonical_address(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    article = await publish(api, admin, text_only(ARTICLE))
    old = local(article["links"]["page"])
    url = f"/api/v1/articles/{article['id']}"
    etag = (await api.get(url, headers=bearer(admin))).headers["ETag"]
    edited = await api.patch(
        url, json={"title": "Tổng kết năm 2021"}, headers={**bearer(admin), "If-Match": etag}
    )
    assert edited.status == 200, await edited.text()
    new = local((await edited.json())["links"]["page"])
    assert new == f"/tin-hoat-dong/tong-ket-nam-2021-{article['id']}" != old

    async def moved() -> bool:
        return (await site.get(old, allow_redirects=False)).status == 301

    await eventually(moved, "the old address never redirected")
    response, _ = await page(site, old, 301)
    assert response.headers["Location"] == new
    # Any other slug or category with the right id goes to the same place; the page is there.
    for wrong in (f"/tin-hoat-dong/x-{article['id']}", f"/khac/tong-ket-nam-2021-{article['id']}"):
        assert (await page(site, wrong, 301))[0].headers["Location"] == new
    _, html = await page(site, new)
    assert "Tổng kết năm 2021" in html


# --- search --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_search_finds_the_same_articles_whatever_the_spelling(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    seed = await publish(api, admin, text_only(ARTICLE))  # summary: "… Hải, Ủy viên Ban …"
    habit = await publish(
        api, admin, short("Thuỷ lợi nội đồng", "Đồng chí Uỷ viên thường vụ dự lễ khởi công.")
    )
    await publish(api, admin, short("Tin thể thao", "Giải bóng đá thanh niên."))
    want = sorted([seed["id"], habit["id"]])
    spellings = [
        "ủy viên",  # old habit, NFC
        "uỷ viên",  # new habit
        "Ủy Viên",
        "UỶ VIÊN",
        unicodedata.normalize("NFD", "ủy viên"),
        unicodedata.normalize("NFD", "uỷ viên"),
        "uy vien",
        "  Uy   VIEN ",
    ]
    for q in spellings:
        found, html = await search_ids(site, q)
        assert sorted(found) == want, (q, found)
        assert "Tìm thấy 2 kết quả" in html
        # Highlighted on the original text, in each article's own spelling and habit.
        assert "<mark>Ủy viên</mark>" in html and "<mark>Uỷ viên</mark>" in html, q
    # Both tone habits in the query find words written either way.
    assert (await search_ids(site, "thủy lợi"))[0] == [habit["id"]]
    assert (await search_ids(site, "thuy loi"))[0] == [habit["id"]]
    assert (await search_ids(site, "bóng đá"))[0] != want


@pytest.mark.usefixtures("worker")
async def test_search_follows_an_edited_body(api: Client, site: Client, admin: str) -> None:
    """The words search finds are kept in step with the text (articles.search_vector): an
    edited article is found by the words it now has, never by those it lost."""
    await create_category(api, admin)
    article = await publish(api, admin, short("Tin địa phương", "Lễ hội đua thuyền rồng."))
    assert (await search_ids(site, "thuyền rồng"))[0] == [article["id"]]
    url = f"/api/v1/articles/{article['id']}"
    etag = (await api.get(url, headers=bearer(admin))).headers["ETag"]
    edited = await api.patch(
        url,
        json={"body": "<p>Hội thi thả diều sáo.</p>"},
        headers={**bearer(admin), "If-Match": etag},
    )
    assert edited.status == 200, await edited.text()

    async def found_by_new_words() -> bool:
        return (await search_ids(site, "thả diều"))[0] == [article["id"]]

    await eventually(found_by_new_words, "the edited article was not found by its new words")
    assert (await search_ids(site, "thuyền rồng"))[0] == []
    assert (await search_ids(site, "địa phương"))[0] == [article["id"]]  # the title kept


@pytest.mark.usefixtures("worker")
async def test_search_ranks_highlights_escapes_and_pages(
    api: Client, site_with: Callable[..., Awaitable[Client]], admin: str
) -> None:
    await create_category(api, admin)
    once = await publish(
        api, admin, short("Tin ngắn", "Họp giao ban. Công tác kiểm sát được nhắc tới.")
    )
    often = await publish(
        api,
        admin,
        short(
            "Nâng cao chất lượng kiểm sát",
            "Kiểm sát viên tập huấn. Kiểm sát điều tra. Kiểm sát xét xử. <b>Kiểm sát</b> án.",
            summary="Tăng cường công tác kiểm sát <script>",
        ),
    )
    site = await site_with(page_size=1)
    found, html = await search_ids(site, "kiểm sát")
    assert found == [often["id"]]  # the one where the words come most often, first
    doc = parse_html(html)
    title = doc.find(".//main//h2[@class='card-title']")
    assert text_of(title) == "Nâng cao chất lượng kiểm sát"
    assert '<a class="card-link" href=' in html and "chất lượng <mark>kiểm sát</mark></a>" in html
    snippet = doc.find(".//main//p[@class='card-snippet']")
    assert [text_of(m) for m in snippet.iter("mark")][:2] == ["kiểm sát", "Kiểm sát"]
    assert "&lt;script&gt;" in html and "<script>" not in html.split("<main", 1)[1]
    # One result a page: a link to the next page carries the query, URL-encoded.
    pager = doc.find(".//main//nav[@class='pagination']")
    next_url = pager.find(".//a[@rel='next']").get("href")
    assert next_url == "/search?q=ki%E1%BB%83m+s%C3%A1t&page=2"
    _, html2 = await page(site, next_url)
    assert ids_of(main_links(parse_html(html2))) == [once["id"]]
    assert 'rel="prev" href="/search?q=ki%E1%BB%83m+s%C3%A1t"' in html2
    # Past the last page, and words nobody wrote: a page that says so.
    _, html3 = await page(site, "/search?q=kiểm+sát&page=3")
    assert main_links(parse_html(html3)) == []
    # ... which says how many there are, and leads back to the first page.
    assert "Trang này không có kết quả; từ khóa “kiểm sát” có 2 kết quả." in html3
    back = parse_html(html3).find(".//main//p[@class='search-summary']/a")
    assert back.get("href") == "/search?q=ki%E1%BB%83m%20s%C3%A1t"
    nothing, html4 = await search_ids(site, "xyzzy")
    assert nothing == [] and "Không tìm thấy kết quả phù hợp." in html4
    empty, html5 = await search_ids(site, "")
    assert empty == [] and "Nhập từ khóa để tìm bài viết." in html5
    punctuation, _ = await search_ids(site, "!!! ---")
    assert punctuation == []
    await page(site, "/search?q=x&page=0", 400)


async def test_search_ranks_only_the_most_recent_matches(
    site: Client, clean: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word half the site contains costs no more than any other: only the most recent
    matches are ranked and counted, and the page says there are more."""
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        category = conn.execute(
            "INSERT INTO categories (slug, name) VALUES ('tin-tuc', 'Tin tức') RETURNING id"
        ).fetchone()
        assert category is not None
        ids = []
        # The oldest mentions the word most often: it would rank first if it were ranked.
        for age, text in enumerate(["thuy loi " * 20, "thuy loi", "thuy loi", "thuy loi"][::-1]):
            row = conn.execute(
                "INSERT INTO articles (uuid, slug, category_id, title, status, published_at,"
                " search_text) VALUES (gen_random_uuid(), %s, %s, %s, 'published',"
                " now() - make_interval(hours => %s), %s) RETURNING id",
                (f"bai-{age}", category[0], f"Bài {age}", age, text),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
    async with site.server.app[pool_key].connection() as conn:
        everything = await queries.search(conn, "thuy loi", limit=10, offset=0)
        assert everything.articles[0].id == ids[-1]  # the oldest ranks first
        assert (everything.total, everything.more) == (4, False)
        bounded = await queries.search(conn, "thuy loi", limit=10, offset=0, candidates=3)
        assert sorted(a.id for a in bounded.articles) == sorted(ids[:3])
        assert (bounded.total, bounded.more) == (3, True)
        past = await queries.search(conn, "thuy loi", limit=10, offset=10, candidates=3)
        assert (past.articles, past.total, past.more) == ([], 3, True)
        exact = await queries.search(conn, "thuy loi", limit=10, offset=0, candidates=4)
        assert (exact.total, exact.more) == (4, False)
    monkeypatch.setattr(queries, "SEARCH_CANDIDATES", 3)
    _, html = await page(site, "/search", params={"q": "thủy lợi"})
    assert "Tìm thấy hơn 3 kết quả cho từ khóa “thủy lợi”" in html
    assert len(main_links(parse_html(html))) == 3


def test_highlight_works_on_the_original_text() -> None:
    terms = pages.query_terms("uy vien")
    assert terms == {"uy", "vien"}
    assert pages.query_terms(unicodedata.normalize("NFD", "Uỷ Viên")) == terms
    text = "Ông A, Ủy viên <b>Ban</b> & Uỷ  viên; uy-vien"
    assert pages.highlight(text, terms) == (
        "Ông A, <mark>Ủy viên</mark> &lt;b&gt;Ban&lt;/b&gt; &amp; <mark>Uỷ  viên</mark>;"
        " <mark>uy</mark>-<mark>vien</mark>"
    )
    long = " ".join(f"từ{n}" for n in range(100)) + " Ủy viên " + " ".join(["cuối"] * 100)
    snippet = pages.highlight(long, terms, words=10)
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert "<mark>Ủy viên</mark>" in snippet and len(snippet) < 120
    # The passage with both words wins over an earlier one with only one of them.
    text = "viên " + "x " * 50 + "ủy viên"
    assert "<mark>ủy viên</mark>" in pages.highlight(text, terms, words=8)
    assert pages.highlight("không có gì", terms, words=8) == "không có gì"


def test_related_query_uses_the_title_words_and_pairs() -> None:
    query = pages.related_tsquery("Hội nghị tổng kết công tác năm 2021 và triển khai")
    assert query is not None
    assert "'hoi'" in query and "('hoi' <-> 'nghi')" in query and "'2021'" in query
    assert "'va'" not in query and "'va' <->" not in query
    assert pages.related_tsquery("và của các") is None
    assert pages.related_tsquery("") is None


# --- related news --------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_related_news_same_category_first_by_similarity_never_itself(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    created = await api.post(
        "/api/v1/categories", json={"slug": "van-ban", "name": "Văn bản"}, headers=bearer(admin)
    )
    assert created.status == 201
    title = ARTICLE["title"]
    day = "2022-01-{:02d}T08:00:00+07:00".format
    other_cat = await publish(
        api, admin, short(title, "Cùng tiêu đề.", category="van-ban", published_at=day(20))
    )
    old_unrelated = await publish(
        api, admin, short("Giải bóng đá thanh niên", "Đội xã giành giải.", published_at=day(2))
    )
    new_unrelated = await publish(
        api, admin, short("Hiến máu nhân đạo", "Ngày hội hiến máu.", published_at=day(3))
    )
    close = await publish(
        api,
        admin,
        short(
            "Viện kiểm sát nhân dân tỉnh Thái Bình tổng kết thi đua",
            "Tổng kết.",
            published_at=day(1),
        ),
    )
    closer = await publish(
        api,
        admin,
        short(
            "Viện kiểm sát nhân dân tỉnh Thái Bình triển khai công tác năm 2022",
            "Năm mới.",
            published_at=day(1),
        ),
    )
    target = await publish(api, admin, text_only(ARTICLE))
    _, html = await page(site, local(target["links"]["page"]))
    related = parse_html(html).find(".//main//section[@class='related']")
    found = ids_of([a.get("href") for a in related.iter("a")])
    assert found == [
        closer["id"],  # same category, most words and pairs in common
        close["id"],
        new_unrelated["id"],  # same category, nothing in common: newest first
        old_unrelated["id"],
        other_cat["id"],  # the same title, but another category
    ]
    assert target["id"] not in found


@pytest.mark.usefixtures("worker")
async def test_pages_cost_a_fixed_number_of_queries(
    api: Client,
    site_with: Callable[..., Awaitable[Client]],
    admin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No N+1: the article page, the home page and search cost as many queries with one
    related article or result as with five (the page cache is off, so every GET renders)."""
    await create_category(api, admin)
    site = await site_with(page_cache_seconds=0)
    await publish(api, admin, short("Viện kiểm sát tin số 0", "Nội dung 0."))
    target = await publish(api, admin, text_only(ARTICLE))
    path = local(target["links"]["page"])
    counted: list[str] = []
    execute = psycopg.AsyncConnection.execute

    async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(str(query)[:60])
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counting)

    async def cost(url: str) -> int:
        counted.clear()
        await page(site, url)
        return len(counted)

    urls = (path, "/", "/tin-hoat-dong/", "/search?q=vien+kiem+sat")
    with_one = [await cost(url) for url in urls]
    monkeypatch.setattr(psycopg.AsyncConnection, "execute", execute)
    for n in range(1, 6):
        await publish(api, admin, short(f"Viện kiểm sát tin số {n}", f"Nội dung {n}."))
    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counting)
    assert [await cost(url) for url in urls] == with_one
    assert with_one[0] <= 5, counted  # chrome, the article and its photos, related and photos


# --- caching -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_edit_invalidates_the_cached_page(api: Client, site: Client, admin: str) -> None:
    await create_category(api, admin)
    article = await publish(api, admin, text_only(ARTICLE))
    path = local(article["links"]["page"])
    cache = site.server.app[cache_key]
    await page(site, path)
    before = cache.hits
    _, html = await page(site, path)
    assert cache.hits == before + 1  # the second answer came from the cache
    url = f"/api/v1/articles/{article['id']}"
    etag = (await api.get(url, headers=bearer(admin))).headers["ETag"]
    new_lead = "Sáng ngày 12/1/2022, hội nghị đã kết thúc tốt đẹp."
    edited = await api.patch(
        url, json={"summary": new_lead}, headers={**bearer(admin), "If-Match": etag}
    )
    assert edited.status == 200, await edited.text()

    async def fresh() -> bool:
        return new_lead in (await page(site, path))[1]

    await eventually(fresh, "the page kept the old text")
    _, html = await page(site, path)
    assert ARTICLE["summary"] not in html


async def test_page_304_counts_a_view_and_etag_follows_the_statistics(
    site: Client, r: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages share one snapshot of the statistics per second (see cache.LIVE_SECONDS);
    # here every answer must see the change at once.
    monkeypatch.setattr(cache_module, "LIVE_SECONDS", 0.0)
    recorder = site.server.app[hits_key]
    recorder.interval, recorder.flush_at = 3600.0, 10**9  # the views stay in its buffer
    await asyncio.sleep(0.3)  # the flusher's current short wait ends; the next one is long
    first, html = await page(site, "/")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.headers["Cache-Control"] == "no-cache"
    again = await site.get("/", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    assert await again.read() == b""
    # the 304 is a page view too (a view's path ends its line, see shared/counting/stream.py)
    assert sum(n for line, n in recorder.lines.items() if line.split(" ", 4)[4] == "/") == 2
    # Another query string is the same page; another page has another ETag.
    assert (await site.get("/?utm_source=zalo", headers={"If-None-Match": etag})).status == 304
    other = await site.get("/search", params={"q": "x"}, headers={"If-None-Match": etag})
    assert other.status == 200
    # The statistics are part of the page: when they change, so does the ETag.
    r.incrby(keys.TOTAL, 41)
    changed, html = await page(site, "/", headers={"If-None-Match": etag})
    assert changed.headers["ETag"] != etag
    assert re.search(r'Tổng số truy cập: <span class="stat-total">41</span>', html)
    r.zadd(keys.ONLINE, {"someone": time.time()})
    online = await site.get("/", headers={"If-None-Match": changed.headers["ETag"]})
    assert online.status == 200 and online.headers["ETag"] != changed.headers["ETag"]
    # A search page is answered 304 too, without running the search again.
    q = await site.get("/search", params={"q": "uy vien"})
    assert (
        await site.get(
            "/search", params={"q": "uy vien"}, headers={"If-None-Match": q.headers["ETag"]}
        )
    ).status == 304
    # An error page never has an ETag, so it is never answered 304.
    missing = await site.get("/khong-co/bai-1", headers={"If-None-Match": "*"})
    assert missing.status == 404 and "ETag" not in missing.headers


# --- sitemaps and robots.txt ---------------------------------------------------------------------


async def test_robots_txt(site: Client) -> None:
    response, text = await page(site, "/robots.txt")
    assert response.content_type == "text/plain"
    lines = text.splitlines()
    assert "User-agent: *" in lines
    assert "Disallow: /search" in lines and "Disallow: /api/" in lines
    assert f"Sitemap: {PUBLIC_URL}/sitemap.xml" in lines


@pytest.mark.usefixtures("worker")
async def test_sitemap_lists_published_articles(api: Client, site: Client, admin: str) -> None:
    await create_category(api, admin)
    article = await publish(api, admin, text_only(ARTICLE))
    hidden = await publish(api, admin, short("Tin sẽ gỡ", "Gỡ."))
    assert (
        await api.delete(f"/api/v1/articles/{hidden['id']}", headers=bearer(admin))
    ).status == 200

    async def gone() -> bool:
        return hidden["links"]["page"] not in (await page(site, "/sitemap.xml"))[1]

    await eventually(gone, "the unpublished article stayed in the sitemap")
    response = await site.get("/sitemap.xml")
    assert response.content_type == "application/xml"
    root = etree.fromstring(await response.read())
    assert root.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}urlset"
    urls = {
        u.findtext("s:loc", namespaces=SITEMAP_NS): u for u in root.findall("s:url", SITEMAP_NS)
    }
    assert list(urls) == [
        f"{PUBLIC_URL}/",
        f"{PUBLIC_URL}/tin-hoat-dong/",
        article["links"]["page"],
    ]
    lastmod = urls[article["links"]["page"]].findtext("s:lastmod", namespaces=SITEMAP_NS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lastmod)
    etag = response.headers["ETag"]
    assert (await site.get("/sitemap.xml", headers={"If-None-Match": etag})).status == 304
    gzipped = await site.get(
        "/sitemap.xml", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert gzipped.headers.get("Content-Encoding") == "gzip"


@pytest.mark.usefixtures("worker")
async def test_sitemap_index_beyond_the_limit(
    api: Client, site: Client, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_category(api, admin)
    published = [
        await publish(api, admin, short(f"Tin số {n}", f"Nội dung {n}.")) for n in range(3)
    ]
    monkeypatch.setattr(sitemap, "MAX_URLS", 2)
    root = etree.fromstring(await (await site.get("/sitemap.xml")).read())
    assert root.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}sitemapindex"
    locs = [
        s.findtext("s:loc", namespaces=SITEMAP_NS) for s in root.findall("s:sitemap", SITEMAP_NS)
    ]
    assert locs == [f"{PUBLIC_URL}/sitemap-{n}.xml" for n in range(3)]
    listed = []
    for loc in locs:
        part = etree.fromstring(await (await site.get(local(loc))).read())
        assert part.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}urlset"
        listed += [
            u.findtext("s:loc", namespaces=SITEMAP_NS) for u in part.findall("s:url", SITEMAP_NS)
        ]
    assert listed == [f"{PUBLIC_URL}/", f"{PUBLIC_URL}/tin-hoat-dong/"] + [
        a["links"]["page"] for a in published
    ]
    assert (await site.get("/sitemap-3.xml")).status == 404
    assert (await site.get("/sitemap-01.xml")).status == 404
    # Keyset batches: each one short query; together every published article, once.
    pool = site.server.app[pool_key]
    batches = [b async for b in queries.sitemap_entries(pool, batch=2)]
    assert [len(b) for b in batches] == [2, 1]
    assert sorted(e.path for b in batches for e in b) == sorted(
        local(a["links"]["page"]) for a in published
    )
    ranged = [b async for b in queries.sitemap_entries(pool, id_range=(1, 3), batch=1)]
    assert [e.path for b in ranged for e in b] == [local(a["links"]["page"]) for a in published[1:]]


async def test_a_sitemap_failing_part_way_ends_its_connection(
    site: Client, clean: Settings
) -> None:
    """A sitemap is streamed: once its 200 and part of the list are sent, a failure (here an
    article whose date PostgreSQL stores but Python cannot read) ends the connection before
    the last chunk, so the crawler sees a broken download; never a 500 inside the body, never
    a short list that looks whole."""
    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        category = conn.execute(
            "INSERT INTO categories (slug, name) VALUES ('tin-tuc', 'Tin tức') RETURNING id"
        ).fetchone()
        assert category is not None
        for n, when in enumerate(("2026-01-01T00:00:00+07:00", "0001-01-01T00:00:00+14:00")):
            conn.execute(
                "INSERT INTO articles (uuid, slug, category_id, title, status, published_at,"
                " search_text) VALUES (gen_random_uuid(), %s, %s, 'Tin', 'published', %s, '')",
                (f"bai-{n}", category[0], when),
            )
    reader, writer = await asyncio.open_connection(site.server.host, site.server.port)
    try:
        writer.write(b"GET /sitemap.xml HTTP/1.1\r\nHost: bantin.test\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 30)  # until the server closes
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in answer
    assert answer.count(b"HTTP/1.1") == 1, answer[-500:]
    assert not answer.endswith(b"0\r\n\r\n")  # no last chunk: the download is broken
    assert b"</urlset>" not in answer


@pytest.mark.usefixtures("worker")
async def test_the_sweep_publishes_what_was_left_waiting(
    api: Client, admin: str, clean: Settings
) -> None:
    """An article left processing (its message lost) and a scheduled one now due (its ETA task
    lost) are both published by the next sweep; one processing but recent is left alone."""
    from workers.app import SWEEP, app

    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        category = conn.execute(
            "INSERT INTO categories (slug, name) VALUES ('tin-tuc', 'Tin tức') RETURNING id"
        ).fetchone()
        assert category is not None
        ids = {}
        for name, status, updated in (
            ("lost", "processing", "now() - interval '10 minutes'"),
            ("due", "scheduled", "now()"),
            ("busy", "processing", "now()"),
        ):
            row = conn.execute(
                "INSERT INTO articles (uuid, slug, category_id, title, status, published_at,"
                f" updated_at, search_text) VALUES (gen_random_uuid(), %s, %s, %s, %s,"
                f" now() - interval '1 minute', {updated}, '') RETURNING id",
                (name, category[0], name, status),
            ).fetchone()
            assert row is not None
            ids[name] = row[0]
    app.send_task(SWEEP)
    await wait_status(api, admin, ids["lost"], "published")
    await wait_status(api, admin, ids["due"], "published")
    busy = await api.get(f"/api/v1/articles/{ids['busy']}", headers=bearer(admin))
    assert (await busy.json())["status"] == "processing"


@pytest.mark.usefixtures("worker")
async def test_a_publish_many_sent_before_the_upgrade_still_publishes(
    api: Client, admin: str, clean: Settings
) -> None:
    """Messages an older ingest queued (`publish_many`, a batch's due articles) are taken by
    the new workers: the articles are published, not left to the sweep's resend."""
    from workers.app import PUBLISH_MANY, app

    with psycopg.connect(clean.require_backends()[0], autocommit=True) as conn:
        conn.execute("INSERT INTO categories (slug, name) VALUES ('tin-tuc', 'Tin tức')")
        ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO articles (uuid, slug, category_id, title, status, search_text)"
                " SELECT gen_random_uuid(), 'bai-' || n, c.id, 'Bài ' || n, 'processing', ''"
                " FROM categories c, generate_series(1, 3) n RETURNING id"
            ).fetchall()
        ]
    app.send_task(PUBLISH_MANY, args=[ids])
    for article_id in ids:
        await wait_status(api, admin, article_id, "published")


# --- the admins' link blocks ---------------------------------------------------------------------


async def test_link_blocks_put_get_and_shown_on_every_page(
    api: Client,
    site: Client,
    admin: str,
    submitter: str,
    r: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "LIVE_SECONDS", 0.0)  # the new version seen at once
    empty = await api.get("/api/v1/site")
    assert empty.status == 200 and await empty.json() == {"link_blocks": []}
    assert empty.headers["ETag"] == '"links-0"'
    _, before = await page(site, "/")  # cached without the blocks
    assert "Liên kết website" not in before
    version = int(r.get(keys.SITE_VERSION) or 0)

    saved = await put_links(api, admin, **{"If-Match": '"links-0"'})
    assert saved.status == 200, await saved.text()
    assert await saved.json() == {"link_blocks": LINK_BLOCKS}
    assert saved.headers["ETag"] == '"links-1"'
    assert int(r.get(keys.SITE_VERSION)) == version + 1  # every cached page goes stale
    got = await api.get("/api/v1/site")
    assert await got.json() == {"link_blocks": LINK_BLOCKS} and got.headers["ETag"] == '"links-1"'

    for path in ("/", "/search?q=x", "/khong-co/", "/khong-co/bai-9"):
        response = await site.get(path)
        doc = parse_html(await response.text())
        aside = doc.find(".//aside")
        assert [text_of(h) for h in aside.iter("h2")][:2] == [
            "Liên kết website",
            "Phần mềm quản lý",
        ]
        hrefs = [a.get("href") for a in aside.iter("a")]
        assert hrefs == [
            "https://vksndtc.gov.vn/",
            "https://thaibinh.gov.vn",
            "http://qlvb.thaibinh.gov.vn/vbden",
        ], path

    stale = await put_links(api, admin, [], **{"If-Match": '"links-0"'})
    assert (await problem(stale, 412))["type"].endswith("stale-etag")
    await problem(await put_links(api, submitter), 403)
    await problem(await api.put("/api/v1/site", json={"link_blocks": []}), 401)
    cleared = await put_links(api, admin, [])
    assert cleared.status == 200 and cleared.headers["ETag"] == '"links-2"'
    assert "Liên kết website" not in (await page(site, "/"))[1]


async def test_concurrent_saves_from_the_same_etag_one_wins(api: Client, admin: str) -> None:
    answers = await asyncio.gather(
        *(
            put_links(api, admin, LINK_BLOCKS[n % 2 :], **{"If-Match": '"links-0"'})
            for n in range(6)
        )
    )
    assert sorted(a.status for a in answers) == [200] + [412] * 5
    assert (await api.get("/api/v1/site")).headers["ETag"] == '"links-1"'


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], {"site"}),
        ({}, {"link_blocks"}),
        ({"link_blocks": {}, "colour": "red"}, {"link_blocks", "colour"}),
        ({"link_blocks": [{"title": "x", "links": []}] * 11}, {"link_blocks"}),
        (
            {
                "link_blocks": [
                    {"title": "  ", "links": [{"title": "A", "url": "javascript:alert(1)"}]},
                    {"title": "T" * 101, "links": [{"title": "", "url": "ftp://x.vn/"}], "x": 1},
                    {"title": "Ok", "links": "none"},
                    {
                        "title": "Ok",
                        "links": [
                            {"title": "Rel", "url": "/trang-chu"},
                            {"title": "Space", "url": "https://a b.vn/"},
                            {"title": "User", "url": "https://user@evil.vn/"},
                            {"title": "Port", "url": "https://a.vn:port/"},
                            {"title": "N" * 201, "url": "https://a.vn/" + "x" * 2000},
                            "https://a.vn/",
                        ],
                    },
                ]
            },
            {
                "link_blocks.0.title",
                "link_blocks.0.links.0.url",
                "link_blocks.1.title",
                "link_blocks.1.x",
                "link_blocks.1.links.0.title",
                "link_blocks.1.links.0.url",
                "link_blocks.2.links",
                "link_blocks.3.links.0.url",
                "link_blocks.3.links.1.url",
                "link_blocks.3.links.2.url",
                "link_blocks.3.links.3.url",
                "link_blocks.3.links.4.title",
                "link_blocks.3.links.4.url",
                "link_blocks.3.links.5",
            },
        ),
    ],
)
async def test_bad_link_blocks_are_refused_with_every_field_error(
    api: Client, admin: str, body: Any, fields: set[str]
) -> None:
    response = await api.put("/api/v1/site", json=body, headers=bearer(admin))
    answer = await problem(response, 422)
    assert {e["field"] for e in answer["errors"]} == fields
    assert all(e["pointer"] == "/" + e["field"].replace(".", "/") for e in answer["errors"])
    assert await (await api.get("/api/v1/site")).json() == {"link_blocks": []}


async def test_link_blocks_need_json(api: Client, admin: str) -> None:
    bad = await api.put(
        "/api/v1/site", data="x", headers={**bearer(admin), "Content-Type": "text/plain"}
    )
    await problem(bad, 415)
    malformed = await api.put(
        "/api/v1/site", data=b"{", headers={**bearer(admin), "Content-Type": "application/json"}
    )
    await problem(malformed, 400)


# --- every page is valid HTML --------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_every_page_parses_without_a_single_error(
    api: Client, site: Client, admin: str
) -> None:
    await create_category(api, admin)
    await put_links(api, admin)
    seed = await publish_seed(api, admin)
    gone = await publish(api, admin, short("Tin sẽ gỡ", "Gỡ."))
    assert (await api.delete(f"/api/v1/articles/{gone['id']}", headers=bearer(admin))).status == 200
    gone_path = local(gone["links"]["page"])

    async def removed() -> bool:
        return (await site.get(gone_path)).status == 410

    await eventually(removed, "the unpublished article never answered 410")
    pages_ = {
        "/": 200,
        "/tin-hoat-dong/": 200,
        local(seed["links"]["page"]): 200,
        "/search?q=%E1%BB%A7y+vi%C3%AAn": 200,
        "/search?q=kh%C3%B4ng+c%C3%B3+g%C3%AC": 200,
        "/search": 200,
        "/khong-co/": 404,
        "/tin-hoat-dong/bai-viet-999999": 404,
        "/tin-hoat-dong/?page=9": 404,
        "/khong-co-trang-nay.html": 404,
        gone_path: 410,
    }
    for path, status in pages_.items():
        _, html = await page(site, path, status)
        assert html.startswith("<!doctype html>"), path
        doc = parse_html(html)
        assert doc.get("lang") == "vi" and len(list(doc.iter("h1"))) == 1, path
        assert doc.find(".//aside") is not None and "__BANTIN" not in html, path
    _, html = await page(site, "/search?q=%E1%BB%A7y+vi%C3%AAn")
    assert "<mark>" in html


async def test_pages_share_one_snapshot_of_the_statistics_per_second(site: Client, r: Any) -> None:
    """One Redis round trip a second for every page of the process, and never older."""
    first, _ = await page(site, "/")
    r.incrby(keys.TOTAL, 7)
    same, html = await page(site, "/")
    assert same.headers["ETag"] == first.headers["ETag"]  # within the second: the snapshot
    await asyncio.sleep(cache_module.LIVE_SECONDS + 0.1)
    later, html = await page(site, "/")
    assert later.headers["ETag"] != first.headers["ETag"]
    assert '<span class="stat-total">7</span>' in html
    stats = await (await site.get("/api/v1/stats")).json()
    assert stats["total"] == 7  # the stats API always reads Redis
