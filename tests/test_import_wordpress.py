"""`bantin import wordpress`: a WordPress export written here, photos served by a local
server standing in for the old site, the real command, PostgreSQL, Redis and a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.conftest import publisher
from tests.fixtures.moving import (
    Post,
    bantin,
    eventually,
    jpeg,
    media_app,
    query,
    write,
    wxr,
)

BODY = """Sáng 12/01/2022, Viện kiểm sát nhân dân tỉnh tổ chức Hội nghị tổng kết công tác năm 2021.

Dự hội nghị có đồng chí Nguyễn Văn A, Phó Viện trưởng.
Hội nghị diễn ra trong một ngày.

[caption id="attachment_7" align="aligncenter" width="640"]<a href="{photo}">
<img class="size-full wp-image-7" src="{photo}" alt="Hội nghị" width="640"
height="480" /></a> Toàn cảnh Hội nghị tổng kết[/caption]

[gallery ids="7,8"]

[vc_row]Ủy ban và Uỷ ban là một.[/vc_row]

<script>alert(1)</script>"""


PHOTO = "/wp-content/uploads/2022/01/hoi-nghi.jpg"


def posts(media: str) -> list[Post]:
    return [
        Post(10, "Hội nghị tổng kết công tác năm 2021", BODY.format(photo=f"{media}{PHOTO}"),
             excerpt="Tóm tắt: hội nghị tổng kết.", tags=("hội nghị", "tổng kết"),
             slug="hoi-nghi-tong-ket", thumbnail=11),
        Post(11, "hoi-nghi.jpg", "", kind="attachment", status="inherit",
             attachment_url=f"{media}/wp-content/uploads/2022/01/bia.jpg"),
        Post(12, "Phổ biến Luật Tố tụng hình sự", "Nội dung phổ biến.\n\nĐoạn hai.",
             category=("ph%e1%bb%95-bi%e1%ba%bfn", "Phổ biến pháp luật"),
             date_gmt="2021-06-01 03:00:00"),
        Post(13, "Bản nháp chưa đăng", "Nháp", status="draft", date_gmt="0000-00-00 00:00:00"),
        Post(14, "Bài riêng tư", "Riêng", status="private"),
        Post(15, "Bài đã xóa", "Thùng rác", status="trash"),
        Post(16, "Giới thiệu", "Trang giới thiệu", kind="page"),
        Post(17, "Ảnh hỏng", f'Bài có ảnh lỗi.<img src="{media}/wp-content/uploads/missing.jpg">',
             date_gmt="2021-05-01 03:00:00"),
    ]  # fmt: skip


async def test_wordpress_export_comes_in_published_with_photos_and_old_links(
    clean: Settings, worker: Any, aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    files = {
        "/wp-content/uploads/2022/01/hoi-nghi.jpg": jpeg(),
        "/wp-content/uploads/2022/01/bia.jpg": jpeg((800, 600), (20, 90, 200)),
    }
    server = await aiohttp_server(media_app(files))
    media = str(server.make_url("")).rstrip("/")
    export = write(tmp_path / "export.xml", wxr(posts(media)))

    ran = await bantin(clean, "import", "wordpress", str(export))
    # One photo answered 404: reported, the command says something failed, the article is in.
    assert ran.code == 1, ran.err
    assert "imported 3" in ran.out
    assert "draft: 2" not in ran.out and "draft: 1" in ran.out
    assert "private: 1" in ran.out and "trash: 1" in ran.out and "not a post (page): 1" in ran.out
    assert "missing.jpg: HTTP 404" in ran.out

    rows = {
        r["title"]: r
        for r in query(
            clean,
            "SELECT a.*, c.slug AS cat, c.name AS cat_name"
            " FROM articles a JOIN categories c ON c.id = a.category_id",
        )
    }
    assert set(rows) == {
        "Hội nghị tổng kết công tác năm 2021",
        "Phổ biến Luật Tố tụng hình sự",
        "Ảnh hỏng",
    }
    main = rows["Hội nghị tổng kết công tác năm 2021"]
    assert main["author"] == "Tố Uyên"
    assert main["summary"] == "Tóm tắt: hội nghị tổng kết."
    assert main["published_at"].isoformat() == "2022-01-12T01:16:46+00:00"
    assert main["cat"] == "tin-hoat-dong" and main["cat_name"] == "Tin hoạt động"
    assert list(main["tags"]) == ["hội nghị", "tổng kết"]
    body = main["body_html"]
    assert "<p>Sáng 12/01/2022" in body and "<br>" in body
    assert (
        '<figure><img src="cid:anh-1" alt="Hội nghị">'
        "<figcaption>Toàn cảnh Hội nghị tổng kết</figcaption></figure>" in body
    )
    assert "[gallery" not in body and "[vc_row]" not in body and "Ủy ban và Uỷ ban là một." in body
    assert "<script" not in body
    law = rows["Phổ biến Luật Tố tụng hình sự"]
    assert law["cat"] == "pho-bien" and law["cat_name"] == "Phổ biến pháp luật"
    assert (
        law["status"] == "published"
        and law["body_html"] == "<p>Nội dung phổ biến.</p>\n<p>Đoạn hai.</p>"
    )
    broken = rows["Ảnh hỏng"]
    assert broken["status"] == "published" and "<img" not in broken["body_html"]
    images = query(
        clean,
        "SELECT part, role, caption FROM images WHERE article_id = %s ORDER BY position",
        main["id"],
    )
    assert images == [
        {"part": "anh-1", "role": "inline", "caption": "Toàn cảnh Hội nghị tổng kết"},
        {"part": "anh-2", "role": "cover", "caption": ""},
    ]
    problems = query(
        clean, "SELECT item, problems FROM import_items WHERE cardinality(problems) > 0"
    )
    assert [r["item"] for r in problems] == ["17"]

    # The workers render the photos, then publish it with its original time.
    async def published() -> bool:
        row = query(clean, "SELECT status, published_at FROM articles WHERE id = %s", main["id"])[0]
        return bool(row["status"] == "published")

    await eventually(published, "the article with photos to publish")
    assert (
        query(clean, "SELECT published_at FROM articles WHERE id = %s", main["id"])[0][
            "published_at"
        ].isoformat()
        == "2022-01-12T01:16:46+00:00"
    )
    rendered = query(
        clean,
        "SELECT count(*) AS n FROM renditions r JOIN images i ON i.id = r.image_id"
        " WHERE i.article_id = %s",
        main["id"],
    )
    assert rendered[0]["n"] > 0

    # Old links answer 301 to the new page.
    site = await publisher(aiohttp_client, clean)
    page = f"/tin-hoat-dong/hoi-nghi-tong-ket-cong-tac-nam-2021-{main['id']}"
    for old in (
        "/2022/01/12/hoi-nghi-tong-ket/",
        "/2022/01/12/hoi-nghi-tong-ket",
        "/?p=10",
        "/2022/01/12/hoi-nghi-tong-ket/?utm_source=fb",
    ):
        response = await site.get(old, allow_redirects=False)
        assert response.status == 301, old
        assert response.headers["Location"] == page
    assert (await site.get(page)).status == 200
    assert (await site.get("/2022/01/12/khong-co/", allow_redirects=False)).status == 404
    assert (await site.get("/?p=999", allow_redirects=False)).status == 200  # just the home page

    # A second run adds nothing.
    again = await bantin(clean, "import", "wordpress", str(export))
    assert "imported 0" in again.out and "already imported: 3" in again.out, again.out
    assert query(clean, "SELECT count(*) AS n FROM articles")[0]["n"] == 3


def test_the_body_is_shown_the_way_wordpress_shows_it() -> None:
    from bantin.moving.wordpress import convert

    body, captions = convert(
        'Dòng một\nDòng hai\n\n[caption id="a" caption="Chú thích cũ"]<img src="/a.jpg">'
        "[/caption]\n\n[embed]https://youtube.example/v[/embed]\n\n<ul>\n<li>Mục</li>\n</ul>"
        "\n\n[contact-form-7 id=3]Liên hệ"
    )
    assert body == (
        "<p>Dòng một<br>\nDòng hai</p>\n"
        '<figure><img src="/a.jpg"><figcaption>Chú thích cũ</figcaption></figure>\n'
        "<ul>\n<li>Mục</li>\n</ul>\n<p>Liên hệ</p>"
    )
    assert captions == {"/a.jpg": "Chú thích cũ"}
