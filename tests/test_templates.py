"""Reader-facing templates: render each with a realistic Vietnamese context.

Module-level helpers (``make_env``, ``render``, ``parse_html`` and the ``make_*``
context builders) document the context contract the publisher must supply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import html5lib
import jinja2
import pytest

from services.publisher.labels import LABELS

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "services" / "publisher" / "templates"
STATIC_DIR = TEMPLATES_DIR.parent / "static"
SITE_URL = "https://vksthaibinh.gov.vn"

ARTICLE_TITLE = (
    "Viện kiểm sát nhân dân tỉnh Thái Bình tổng kết công tác năm 2021 "
    "và triển khai công tác năm 2022"
)
GALLERY_TITLE = "Một số hình ảnh tại Hội nghị"
CAPTION = "Đồng chí Viện trưởng phát biểu tại Hội nghị"
XSS = "<script>x</script>"

Ctx = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def make_env(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """The environment exactly as the publisher constructs it."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, ctx: Ctx) -> str:
    return make_env().get_template(template).render(**ctx)


def parse_html(html: str) -> Element:
    """Parse with html5lib in strict mode; raises on the first parse error."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    doc = parser.parse(html)
    assert parser.errors == []
    return doc


def text_of(el: Element) -> str:
    return " ".join("".join(el.itertext()).split())


def make_img(name: str, caption: str = "", placeholder: str | None = "#c8b8a0") -> Ctx:
    return {
        "src": f"/media/{name}-640.jpg",
        "width": 640,
        "height": 427,
        "caption": caption,
        "srcset": f"/media/{name}-320.jpg 320w, /media/{name}-640.jpg 640w",
        "sources": [
            {
                "type": "image/avif",
                "srcset": f"/media/{name}-320.avif 320w, /media/{name}-640.avif 640w",
            },
            {
                "type": "image/webp",
                "srcset": f"/media/{name}-320.webp 320w, /media/{name}-640.webp 640w",
            },
        ],
        "placeholder": placeholder,
    }


def make_card(title: str, slug: str, thumb: bool = True, **extra: Any) -> Ctx:
    card: Ctx = {
        "title": title,
        "url": f"/tin-hoat-dong/{slug}",
        "summary": f"Tóm tắt: {title}",
        "published_display": "10/01/2022 15:30",
        "published_iso": "2022-01-10T15:30:00+07:00",
        "thumb": make_img(slug, caption=title) if thumb else None,
    }
    card.update(extra)
    return card


def make_site() -> Ctx:
    return {
        "name": "Viện kiểm sát nhân dân tỉnh Thái Bình",
        "url": SITE_URL,
        "categories": [
            {"name": "Tin hoạt động", "url": "/tin-hoat-dong", "slug": "tin-hoat-dong"},
            {"name": "Văn bản pháp luật", "url": "/van-ban", "slug": "van-ban"},
            {"name": "Gương sáng", "url": "/guong-sang", "slug": "guong-sang"},
        ],
        "link_blocks": [
            {
                "title": "Liên kết website",
                "links": [
                    {"title": "VKSND tối cao", "url": "https://vksndtc.gov.vn"},
                    {"title": "Cổng TTĐT tỉnh Thái Bình", "url": "https://thaibinh.gov.vn"},
                ],
            },
            {
                "title": "Phần mềm quản lý",
                "links": [{"title": "Quản lý văn bản", "url": "https://qlvb.example.vn"}],
            },
        ],
        "feeds": [
            {
                "title": "Tin hoạt động (RSS)",
                "type": "application/rss+xml",
                "url": f"{SITE_URL}/tin-hoat-dong/rss.xml",
            },
            {
                "title": "Tin hoạt động (Atom)",
                "type": "application/atom+xml",
                "url": f"{SITE_URL}/tin-hoat-dong/atom.xml",
            },
        ],
    }


def make_page(title: str, path: str, og_type: str = "website", **extra: Any) -> Ctx:
    page: Ctx = {
        "title": title,
        "canonical_url": f"{SITE_URL}{path}",
        "description": "Trang thông tin điện tử VKSND tỉnh Thái Bình",
        "og_type": og_type,
        "og_image": None,
        "jsonld": None,
        "noindex": False,
    }
    page.update(extra)
    return page


def base_context(page: Ctx, current_category: str | None = None) -> Ctx:
    return {
        "labels": LABELS,
        "site": make_site(),
        "stats": {"online": "__ONLINE__", "total": "__TOTAL__"},
        "page": page,
        "current_category": current_category,
    }


def make_article(**extra: Any) -> Ctx:
    article: Ctx = {
        "title": ARTICLE_TITLE,
        "category": {"name": "Tin hoạt động", "url": "/tin-hoat-dong"},
        "published_display": "12/01/2022 08:16",
        "published_iso": "2022-01-12T08:16:00+07:00",
        "updated_iso": "2022-01-12T09:00:00+07:00",
        "summary": "Sáng ngày 11/01/2022, VKSND tỉnh Thái Bình tổ chức Hội nghị tổng kết.",
        "body_html": (
            "<p>Dự Hội nghị có đồng chí Phó Bí thư Tỉnh ủy.</p>"
            '<figure><picture><source type="image/webp" srcset="/media/b.webp">'
            '<img src="/media/b.jpg" width="640" height="427" alt="Toàn cảnh"></picture>'
            "<figcaption>Toàn cảnh Hội nghị</figcaption></figure>"
            "<p>Hội nghị đã <strong>thống nhất</strong> các chỉ tiêu năm 2022.</p>"
        ),
        "gallery_title": GALLERY_TITLE,
        "gallery": [make_img("hn-1", caption=CAPTION), make_img("hn-2", placeholder=None)],
        "author": "Tố Uyên",
        "unit": "Văn phòng VKSND tỉnh",
        "cover": make_img("cover", caption="Quang cảnh Hội nghị"),
    }
    article.update(extra)
    return article


def article_context(**article_extra: Any) -> Ctx:
    article = make_article(**article_extra)
    jsonld = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article["title"],
        "datePublished": article["published_iso"],
        "author": {"@type": "Person", "name": article["author"]},
    }
    page = make_page(
        f"{article['title']} - VKSND tỉnh Thái Bình",
        "/tin-hoat-dong/tong-ket-2021",
        og_type="article",
        og_image=f"{SITE_URL}/media/cover-1200.jpg",
        jsonld=jsonld,
    )
    ctx = base_context(page, current_category="tin-hoat-dong")
    ctx["article"] = article
    ctx["related"] = [
        make_card("Hội nghị triển khai công tác kiểm sát quý I", "quy-1"),
        make_card("Tập huấn nghiệp vụ năm 2022", "tap-huan", thumb=False),
    ]
    return ctx


def home_context() -> Ctx:
    ctx = base_context(make_page("VKSND tỉnh Thái Bình", "/"))
    ctx["sections"] = [
        {
            "category": {"name": "Tin hoạt động", "url": "/tin-hoat-dong"},
            "cards": [
                make_card(ARTICLE_TITLE, "tong-ket-2021"),
                make_card("Tập huấn nghiệp vụ năm 2022", "tap-huan", thumb=False),
            ],
        },
        {"category": {"name": "Gương sáng", "url": "/guong-sang"}, "cards": []},
    ]
    return ctx


def category_context() -> Ctx:
    ctx = base_context(
        make_page("Tin hoạt động - trang 2", "/tin-hoat-dong?page=2"),
        current_category="tin-hoat-dong",
    )
    ctx["category"] = {"name": "Tin hoạt động", "url": "/tin-hoat-dong"}
    ctx["cards"] = [make_card(ARTICLE_TITLE, "tong-ket-2021")]
    ctx["pagination"] = {
        "page": 2,
        "prev_url": "/tin-hoat-dong",
        "next_url": "/tin-hoat-dong?page=3",
    }
    return ctx


def search_context(q: str = "tổng kết") -> Ctx:
    ctx = base_context(make_page(f"Tìm kiếm: {q}", "/search", noindex=True))
    ctx["q"] = q
    ctx["results"] = [
        make_card(
            ARTICLE_TITLE,
            "tong-ket-2021",
            snippet_html="VKSND tỉnh Thái Bình <mark>tổng kết</mark> công tác năm 2021",
        ),
        make_card("Tập huấn nghiệp vụ năm 2022", "tap-huan", thumb=False),
    ]
    ctx["total"] = 2
    ctx["more_matches"] = False
    ctx["pagination"] = {"page": 1, "prev_url": None, "next_url": None}
    return ctx


def error_context(status: int = 404) -> Ctx:
    title = LABELS["not_found_title"] if status == 404 else LABELS["gone_title"]
    message = LABELS["not_found_message"] if status == 404 else LABELS["gone_message"]
    ctx = base_context(make_page(title, "/khong-co", noindex=True))
    ctx.update(status=status, title=title, message=message)
    return ctx


CONTEXTS = {
    "home.html": home_context,
    "category.html": category_context,
    "article.html": article_context,
    "search.html": search_context,
    "error.html": error_context,
}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_every_page_is_valid_and_has_the_common_chrome(name: str) -> None:
    ctx = CONTEXTS[name]()
    html = render(name, ctx)
    assert html.startswith("<!doctype html>")
    doc = parse_html(html)

    assert doc.tag == "html"
    assert doc.get("lang") == "vi"
    head = doc.find("head")
    assert head.find("meta[@charset='utf-8']") is not None
    assert head.find("meta[@name='viewport']") is not None
    assert text_of(head.find("title")) == ctx["page"]["title"]
    canonical = head.find("link[@rel='canonical']")
    assert canonical is not None
    assert canonical.get("href") == ctx["page"]["canonical_url"]
    assert head.find("link[@rel='stylesheet']").get("href") == "/static/site.css"

    og = {m.get("property"): m.get("content") for m in head.iter("meta") if m.get("property")}
    assert og["og:title"] == ctx["page"]["title"]
    assert og["og:type"] == ctx["page"]["og_type"]
    assert og["og:url"] == ctx["page"]["canonical_url"]
    assert og["og:site_name"] == ctx["site"]["name"]
    assert og["og:description"] == ctx["page"]["description"]
    assert og["og:locale"] == "vi_VN"
    assert ("og:image" in og) == bool(ctx["page"]["og_image"])

    robots = head.find("meta[@name='robots']")
    assert (robots is not None) == ctx["page"]["noindex"]

    alternates = [
        (link.get("type"), link.get("title"), link.get("href"))
        for link in head.iter("link")
        if link.get("rel") == "alternate"
    ]
    assert alternates == [(f["type"], f["title"], f["url"]) for f in ctx["site"]["feeds"]]
    footer = doc.find(".//footer")
    assert footer is not None
    footer_links = {a.get("href") for a in footer.iter("a")}
    assert {f["url"] for f in ctx["site"]["feeds"]} <= footer_links
    assert LABELS["feeds"] in text_of(footer)

    body = doc.find("body")
    assert len(list(body.iter("h1"))) == 1
    skip = body.find("a")  # first focusable element
    assert skip.get("href") == "#main"
    assert text_of(skip) == LABELS["skip_to_content"]
    assert body.find(".//header") is not None
    assert body.find(".//main[@id='main']") is not None
    assert body.find(".//aside") is not None
    nav = body.find(".//header//nav")
    assert nav.get("aria-label")
    nav_text = text_of(nav)
    assert LABELS["home"] in nav_text
    for cat in ctx["site"]["categories"]:
        assert cat["name"] in nav_text

    header_form = body.find(".//header//form")
    assert header_form.get("action") == "/search"
    assert header_form.get("method") == "get"
    q_input = header_form.find(".//input[@name='q']")
    label = header_form.find(".//label")
    assert label.get("for") == q_input.get("id")

    aside = text_of(body.find(".//aside"))
    assert "Liên kết website" in aside
    assert "Phần mềm quản lý" in aside
    assert "VKSND tối cao" in aside
    assert LABELS["stats_title"] in aside
    assert 'Khách online: <span class="stat-online">__ONLINE__</span>' in html
    assert 'Tổng số truy cập: <span class="stat-total">__TOTAL__</span>' in html

    ids = [el.get("id") for el in doc.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_article_page() -> None:
    ctx = article_context()
    html = render("article.html", ctx)
    doc = parse_html(html)
    main = doc.find(".//main")
    main_text = text_of(main)

    kicker = main.find(".//a[@href='/tin-hoat-dong']")
    assert text_of(kicker) == "Tin hoạt động"
    assert text_of(main.find(".//h1")) == ARTICLE_TITLE
    time = main.find(".//time")
    assert text_of(time) == "12/01/2022 08:16"
    assert time.get("datetime") == "2022-01-12T08:16:00+07:00"
    assert f"{LABELS['published']}: 12/01/2022 08:16" in main_text
    lead = main.find(".//p[@class='lead']")
    assert text_of(lead).startswith("Sáng ngày 11/01/2022")

    # body_html is inserted verbatim (already safe).
    assert "<strong>thống nhất</strong>" in html
    assert "<figcaption>Toàn cảnh Hội nghị</figcaption>" in html

    gallery = main.find(".//section[@class='gallery']")
    assert text_of(gallery.find("h2")) == GALLERY_TITLE
    figures = gallery.findall(".//figure")
    assert len(figures) == 2
    assert text_of(figures[0].find("figcaption")) == CAPTION
    assert figures[0].find(".//img").get("alt") == CAPTION
    assert figures[1].find("figcaption") is None  # empty caption: no figcaption
    assert figures[1].find(".//img").get("alt") == ""

    assert text_of(main.find(".//p[@class='byline']")) == "Tố Uyên - Văn phòng VKSND tỉnh"

    related = main.find(".//section[@class='related']")
    assert text_of(related.find("h2")) == "Tin liên quan"
    assert "Hội nghị triển khai công tác kiểm sát quý I" in text_of(related)
    assert "Tập huấn nghiệp vụ năm 2022" in text_of(related)

    # Cover is above the fold: eager and prioritised; gallery images are lazy.
    cover = main.find(".//figure[@class='cover']//img")
    assert cover.get("loading") is None
    assert cover.get("fetchpriority") == "high"
    assert all(f.find(".//img").get("loading") == "lazy" for f in figures)

    scripts = [s for s in doc.iter("script") if s.get("type") == "application/ld+json"]
    assert len(scripts) == 1
    data = json.loads(scripts[0].text)
    assert data["headline"] == ARTICLE_TITLE
    assert data["@type"] == "NewsArticle"

    og = {m.get("property"): m.get("content") for m in doc.iter("meta") if m.get("property")}
    assert og["og:type"] == "article"
    assert og["og:image"] == f"{SITE_URL}/media/cover-1200.jpg"
    assert og["article:published_time"] == "2022-01-12T08:16:00+07:00"

    current = [a for a in doc.find(".//header//nav").iter("a") if a.get("aria-current")]
    assert [text_of(a) for a in current] == ["Tin hoạt động"]


def test_picture_macro_markup() -> None:
    html = render("article.html", article_context())
    doc = parse_html(html)
    fig = doc.find(".//section[@class='gallery']//figure")
    picture = fig.find("picture")
    sources = picture.findall("source")
    assert [s.get("type") for s in sources] == ["image/avif", "image/webp"]
    assert all(s.get("sizes") and s.get("srcset") for s in sources)
    img = picture.find("img")
    assert img.get("src") == "/media/hn-1-640.jpg"
    assert img.get("srcset") == "/media/hn-1-320.jpg 320w, /media/hn-1-640.jpg 640w"
    assert img.get("sizes")
    assert (img.get("width"), img.get("height")) == ("640", "427")
    assert img.get("decoding") == "async"
    assert img.get("style") == "background-color: #c8b8a0"
    second = doc.findall(".//section[@class='gallery']//figure")[1].find(".//img")
    assert second.get("style") is None


def test_picture_placeholder_rejects_css_injection() -> None:
    img = make_img("x", placeholder="red; background-image: url(https://evil.example/)")
    html = render("article.html", article_context(gallery=[img]))
    parse_html(html)
    assert "evil.example" not in html


@pytest.mark.parametrize(
    ("author", "unit", "expected"),
    [
        ("Tố Uyên", "", "Tố Uyên"),
        ("Tố Uyên", None, "Tố Uyên"),
        ("", "Văn phòng VKSND tỉnh", "Văn phòng VKSND tỉnh"),
        ("", "", None),
    ],
)
def test_byline_variants(author: str, unit: str | None, expected: str | None) -> None:
    doc = parse_html(render("article.html", article_context(author=author, unit=unit)))
    byline = doc.find(".//p[@class='byline']")
    if expected is None:
        assert byline is None
    else:
        assert text_of(byline) == expected
        assert " - " not in text_of(byline)


def test_article_without_optional_parts() -> None:
    ctx = article_context(gallery=[], gallery_title="", cover=None, summary="")
    ctx["related"] = []
    html = render("article.html", ctx)
    doc = parse_html(html)
    assert doc.find(".//section[@class='gallery']") is None
    assert doc.find(".//section[@class='related']") is None
    assert doc.find(".//p[@class='lead']") is None
    assert "Tin liên quan" not in html


def test_gallery_heading_falls_back_to_default_label() -> None:
    doc = parse_html(render("article.html", article_context(gallery_title="")))
    gallery = doc.find(".//section[@class='gallery']")
    assert text_of(gallery.find("h2")) == LABELS["gallery_default"]


def test_html_in_titles_is_escaped() -> None:
    ctx = article_context(title=XSS, author=XSS, category={"name": XSS, "url": "/x"})
    ctx["page"]["title"] = XSS
    ctx["page"]["description"] = XSS
    ctx["site"]["name"] = XSS
    ctx["related"] = [make_card(XSS, "xss")]
    ctx["article"]["gallery"] = [make_img("g", caption=XSS)]
    html = render("article.html", ctx)
    parse_html(html)
    assert XSS not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html

    home = home_context()
    home["sections"][0]["cards"] = [make_card(XSS, "xss")]
    home["sections"][0]["category"]["name"] = XSS
    html = render("home.html", home)
    parse_html(html)
    assert XSS not in html


def test_jsonld_cannot_break_out_of_script() -> None:
    ctx = article_context()
    ctx["page"]["jsonld"] = {"headline": "</script><script>alert(1)</script>"}
    html = render("article.html", ctx)
    doc = parse_html(html)
    assert "</script><script>" not in html
    script = next(s for s in doc.iter("script") if s.get("type") == "application/ld+json")
    assert json.loads(script.text)["headline"] == "</script><script>alert(1)</script>"


def test_home_page() -> None:
    doc = parse_html(render("home.html", home_context()))
    main = doc.find(".//main")
    assert [text_of(h) for h in main.iter("h2")] == ["Tin hoạt động", "Gương sáng"]
    assert ARTICLE_TITLE in [text_of(h) for h in main.iter("h3")]
    assert LABELS["read_more"] in text_of(main)
    card_img = main.find(".//article//img")
    assert card_img.get("loading") == "lazy"
    current = [a for a in doc.find(".//header//nav").iter("a") if a.get("aria-current")]
    assert [(text_of(a), a.get("aria-current")) for a in current] == [("Trang chủ", "page")]


def test_category_page_and_pagination() -> None:
    doc = parse_html(render("category.html", category_context()))
    main = doc.find(".//main")
    assert text_of(main.find("h1")) == "Tin hoạt động"
    assert text_of(main.find(".//article//h2")) == ARTICLE_TITLE
    assert text_of(main.find(".//article//time")) == "10/01/2022 15:30"
    pager = main.find(".//nav")
    assert pager.get("aria-label") == LABELS["pagination"]
    links = {a.get("rel"): (a.get("href"), text_of(a)) for a in pager.iter("a")}
    assert links["prev"] == ("/tin-hoat-dong", LABELS["page_prev"])
    assert links["next"] == ("/tin-hoat-dong?page=3", LABELS["page_next"])
    assert "Trang 2" in text_of(pager)
    current = [a for a in doc.find(".//header//nav").iter("a") if a.get("aria-current")]
    assert [(text_of(a), a.get("aria-current")) for a in current] == [("Tin hoạt động", "page")]


def test_category_empty_and_single_page() -> None:
    ctx = category_context()
    ctx["cards"] = []
    ctx["pagination"] = {"page": 1, "prev_url": None, "next_url": None}
    doc = parse_html(render("category.html", ctx))
    main = doc.find(".//main")
    assert LABELS["category_empty"] in text_of(main)
    assert main.find(".//nav") is None


def test_search_page_with_results() -> None:
    html = render("search.html", search_context())
    doc = parse_html(html)
    main = doc.find(".//main")
    assert text_of(main.find("h1")) == LABELS["search"]
    form = main.find(".//form")
    assert form.get("action") == "/search"
    assert form.get("method") == "get"
    q_input = form.find(".//input[@name='q']")
    assert q_input.get("value") == "tổng kết"
    assert text_of(form.find("label")) == LABELS["search_label"]
    assert form.find("label").get("for") == q_input.get("id")
    assert "Tìm thấy 2 kết quả cho từ khóa “tổng kết”" in text_of(main)
    assert "<mark>tổng kết</mark>" in html  # snippet_html is trusted markup
    # The card without a snippet falls back to its summary.
    assert "Tóm tắt: Tập huấn nghiệp vụ năm 2022" in text_of(main)
    # More matches than are ranked: the summary says so.
    ctx = {**search_context(), "total": 1000, "more_matches": True}
    main = parse_html(render("search.html", ctx)).find(".//main")
    assert "Tìm thấy hơn 1000 kết quả cho từ khóa “tổng kết”" in text_of(main)


def test_search_page_no_results_and_empty_query() -> None:
    ctx = search_context(q='"><b>x</b> 100%')
    ctx["results"] = []
    ctx["total"] = 0
    html = render("search.html", ctx)
    doc = parse_html(html)
    assert LABELS["no_results"] in text_of(doc.find(".//main"))
    assert "<b>x</b>" not in html
    # Past the last page: no cards, but the count and a link back to the first page.
    ctx["total"] = 3
    html = render("search.html", ctx)
    summary = parse_html(html).find(".//main//p[@class='search-summary']")
    assert "có 3 kết quả" in text_of(summary) and "<b>x</b>" not in html
    assert summary.find("a").get("href") == "/search?q=%22%3E%3Cb%3Ex%3C/b%3E%20100%25"

    ctx = search_context(q="")
    ctx["results"] = []
    ctx["total"] = 0
    doc = parse_html(render("search.html", ctx))
    assert LABELS["search_hint"] in text_of(doc.find(".//main"))


@pytest.mark.parametrize("status", [404, 410])
def test_error_page(status: int) -> None:
    ctx = error_context(status)
    doc = parse_html(render("error.html", ctx))
    main = doc.find(".//main")
    assert text_of(main.find(".//h1")) == ctx["title"]
    assert str(status) in text_of(main)
    assert ctx["message"] in text_of(main)
    assert main.find(".//a[@href='/']") is not None


def test_labels_catalog() -> None:
    # Jinja resolves labels.items / labels.get to dict methods before keys.
    shadowed = set(LABELS) & set(dir(dict))
    assert not shadowed
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in LABELS.items())
    for key in ("home", "related", "online", "total", "search", "page_prev", "page_next"):
        assert key in LABELS


def test_stylesheet_is_self_contained() -> None:
    css = (STATIC_DIR / "site.css").read_text(encoding="utf-8")
    assert "@import" not in css
    assert "@font-face" not in css
    assert "http" not in css
    assert ":focus-visible" in css
    assert "@media (min-width" in css


def test_search_result_title_may_carry_highlighting() -> None:
    ctx = search_context()
    ctx["results"][0]["title_html"] = "VKSND <mark>tổng kết</mark> &lt;năm&gt;"
    ctx["results"][1]["title"] = XSS  # no title_html: the plain title, escaped
    html = render("search.html", ctx)
    doc = parse_html(html)
    titles = list(doc.find(".//main").iter("h2"))
    assert [m.text for m in titles[0].iter("mark")] == ["tổng kết"]
    assert text_of(titles[0]) == "VKSND tổng kết <năm>"
    assert text_of(titles[1]) == XSS and XSS not in html


def test_publisher_context_renders_with_link_blocks() -> None:
    """The context the publisher builds (pages.base_context) fits the templates: the admins'
    link blocks reach the sidebar, escaped."""
    from services.publisher import pages
    from shared.models import Category
    from shared.settings import Settings
    from shared.site import Chrome, Link, LinkBlock

    settings = Settings.from_env({"BANTIN_PUBLIC_URL": SITE_URL})
    blocks = (
        LinkBlock("Liên kết website", (Link("VKSND tối cao", "https://vksndtc.gov.vn"),)),
        LinkBlock("Phần mềm quản lý", (Link(XSS, 'https://a.vn/?q="x"'),)),
    )
    ctx = pages.base_context(
        settings,
        Chrome([Category(1, "tin-hoat-dong", "Tin hoạt động")], blocks),
        title="Trang chủ",
        canonical="/",
    )
    ctx.update(sections=[])
    html = render("home.html", ctx)
    doc = parse_html(html)
    aside = doc.find(".//aside")
    assert [text_of(h) for h in aside.iter("h2")] == [
        "Liên kết website",
        "Phần mềm quản lý",
        LABELS["stats_title"],
    ]
    assert [a.get("href") for a in aside.iter("a")] == [
        "https://vksndtc.gov.vn",
        'https://a.vn/?q="x"',
    ]
    assert XSS not in html
    assert f'<span class="stat-online">{pages.ONLINE_MARK}</span>' in html
