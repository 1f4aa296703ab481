"""Bodies from submitters: converted and sanitized with an allowlist."""

from __future__ import annotations

from typing import Any

import pytest

from shared.html import cid_parts, sanitize, to_html

HOSTILE = [
    ("<p>a<script>alert(1)</script>b</p>", "<script"),
    ('<p style="color:red">x</p><style>p{}</style>', "style"),
    ('<p onclick="steal()">x</p><img src="cid:a" onerror="x()">', "on"),
    ('<iframe src="https://evil.example"></iframe>', "iframe"),
    ('<a href="javascript:alert(1)">x</a>', "javascript:"),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', "javascript:"),
    ('<img src="https://tracker.example/p.gif">', "tracker"),
    ('<img src="data:image/png;base64,AAAA">', "data:"),
    ('<object data="x.swf"></object><embed src="x.swf">', "swf"),
    ('<form action="/x"><input name="q"></form>', "<form"),
    ("<svg><script>alert(1)</script></svg>", "<svg"),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example">', "refresh"),
    ("<!-- a comment -->", "comment"),
]


@pytest.mark.parametrize(("fragment", "forbidden"), HOSTILE)
def test_hostile_html_is_removed(fragment: str, forbidden: str) -> None:
    assert forbidden.lower() not in sanitize(fragment, {"a"}).lower()


def test_own_photos_kept_others_dropped() -> None:
    cleaned = sanitize(
        '<figure><img src="cid:anh-1" alt="x"><figcaption>c</figcaption>'
        '</figure><img src="cid:khac">',
        {"anh-1"},
    )
    assert '<img src="cid:anh-1" alt="x">' in cleaned
    assert "cid:khac" not in cleaned and "<figcaption>c</figcaption>" in cleaned


def test_links_get_rel_and_keep_text() -> None:
    cleaned = sanitize('<a href="https://vksnd.thaibinh.gov.vn/">Trang chủ</a>', set())
    assert 'rel="noopener noreferrer"' in cleaned and "Trang chủ</a>" in cleaned


def test_markdown_and_text_bodies() -> None:
    md = to_html("## Kết quả\n\n**Năm 2021**, [xem](https://example.org) <b>raw</b>", "markdown")
    assert "<h2>Kết quả</h2>" in md and "<strong>Năm 2021</strong>" in md
    assert "&lt;b&gt;raw&lt;/b&gt;" in md  # raw HTML in Markdown is not passed through
    text = to_html("Dòng 1\nDòng 2\n\n<b>Đoạn 2</b>", "text")
    assert text == "<p>Dòng 1<br>Dòng 2</p>\n<p>&lt;b&gt;Đoạn 2&lt;/b&gt;</p>"


def test_cid_parts_in_order() -> None:
    assert cid_parts('<img src="cid:b"><img src="cid:a.1">') == ["b", "a.1"]


async def test_api_stores_the_sanitized_body(api: object, admin: str) -> None:
    from bantin.bootstrap import demo_seed, text_only
    from tests.test_api import bearer, create_category

    client: Any = api
    await create_category(client, admin)
    # (cid: references to photos the request does not carry are refused outright: 422.)
    hostile = [(f, bad) for f, bad in HOSTILE if "cid:" not in f]
    body = "".join(fragment for fragment, _ in hostile) + "<p>Nội dung\u200b thật\x00</p>"
    article = {
        **text_only(demo_seed()["article"]),
        "body": body,
        "title": "Tiêu đề\x07 có\u00a0ký tự lạ",
    }
    response = await client.post("/api/v1/articles", json=article, headers=bearer(admin))
    assert response.status == 202, await response.text()
    stored = await (
        await client.get(f"/api/v1/articles/{(await response.json())['id']}", headers=bearer(admin))
    ).json()
    for _, forbidden in hostile:
        assert forbidden.lower() not in stored["body"].lower()
    assert "<p>Nội dung thật</p>" in stored["body"]
    assert stored["title"] == "Tiêu đề có ký tự lạ"
