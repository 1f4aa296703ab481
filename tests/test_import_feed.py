"""`bantin import feed`: an old portal's RSS 2.0 or Atom feed, from a file or a URL, with its
enclosures and media:content photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.conftest import publisher
from tests.fixtures.moving import bantin, jpeg, media_app, query, write

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>Cổng thông tin cũ</title>
  <link>http://cu.example.vn/</link>
  <description>Tin tức</description>
  <item>
    <title>Hội nghị triển khai công tác năm 2022</title>
    <link>http://cu.example.vn/tin-tuc/hoi-nghi-2022.html</link>
    <guid isPermaLink="true">http://cu.example.vn/tin-tuc/hoi-nghi-2022.html</guid>
    <category>Tin hoạt động</category>
    <pubDate>Wed, 12 Jan 2022 01:16:46 GMT</pubDate>
    <author>Tố Uyên</author>
    <description><![CDATA[<p>Sáng 12/01, Viện kiểm sát tổ chức hội nghị.</p>
    <script>x()</script>]]></description>
    <enclosure url="{media}/bia.jpg" length="1000" type="image/jpeg"/>
    <media:content url="{media}/anh-2.jpg" medium="image"/>
  </item>
  <item>
    <title>Thông báo lịch tiếp công dân</title>
    <link>http://cu.example.vn/thong-bao/lich.html</link>
    <guid isPermaLink="false">tb-77</guid>
    <pubDate>Tue, 11 Jan 2022 02:00:00 GMT</pubDate>
    <description>Lịch tiếp công dân tháng 1.</description>
  </item>
</channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Cổng cũ</title>
  <link href="http://atom.example.vn/"/>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2022-01-12T08:00:00Z</updated>
  <entry>
    <title>Phổ biến pháp luật về phòng chống tham nhũng</title>
    <link href="http://atom.example.vn/phap-luat/bai-1"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2022-01-10T03:00:00Z</updated>
    <category term="Pháp luật"/>
    <summary>Tóm tắt bài phổ biến.</summary>
    <content type="html">&lt;p&gt;Nội dung &lt;b&gt;đầy đủ&lt;/b&gt;.&lt;/p&gt;</content>
  </entry>
</feed>
"""


async def test_rss_feed_from_a_url_with_photos(
    clean: Settings, worker: Any, aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    files = {"/bia.jpg": jpeg(), "/anh-2.jpg": jpeg((400, 300), (10, 160, 60))}
    server = await aiohttp_server(media_app(files))
    media = str(server.make_url("")).rstrip("/")
    files["/feed.rss"] = RSS.replace("{media}", media).encode()

    ran = await bantin(clean, "import", "feed", f"{media}/feed.rss")
    assert ran.code == 0, ran.out + ran.err
    assert "imported 2" in ran.out
    rows = {
        r["title"]: r
        for r in query(
            clean,
            "SELECT a.*, c.slug AS cat FROM articles a JOIN categories c ON c.id = a.category_id",
        )
    }
    news = rows["Hội nghị triển khai công tác năm 2022"]
    assert news["cat"] == "tin-hoat-dong" and news["author"] == "Tố Uyên"
    assert news["published_at"].isoformat() == "2022-01-12T01:16:46+00:00"
    assert "<script" not in news["body_html"] and "Viện kiểm sát" in news["body_html"]
    images = query(
        clean, "SELECT role FROM images WHERE article_id = %s ORDER BY position", news["id"]
    )
    assert [i["role"] for i in images] == ["cover", "gallery"]
    assert rows["Thông báo lịch tiếp công dân"]["status"] == "published"

    site = await publisher(aiohttp_client, clean)
    old = await site.get("/tin-tuc/hoi-nghi-2022.html", allow_redirects=False)
    assert old.status == 301
    assert old.headers["Location"].endswith(f"-{news['id']}")

    again = await bantin(clean, "import", "feed", f"{media}/feed.rss")
    assert again.code == 0 and "already imported: 2" in again.out


async def test_atom_feed_from_a_file(clean: Settings, tmp_path: Path) -> None:
    ran = await bantin(clean, "import", "feed", str(write(tmp_path / "feed.atom", ATOM)))
    assert ran.code == 0, ran.out + ran.err
    row = query(
        clean, "SELECT a.*, c.name AS cat FROM articles a JOIN categories c ON c.id = a.category_id"
    )[0]
    assert row["title"] == "Phổ biến pháp luật về phòng chống tham nhũng"
    assert row["cat"] == "Pháp luật" and row["summary"] == "Tóm tắt bài phổ biến."
    assert row["body_html"] == "<p>Nội dung <b>đầy đủ</b>.</p>"
    assert row["published_at"].isoformat() == "2022-01-10T03:00:00+00:00"


async def test_bad_feeds_are_refused(clean: Settings, aiohttp_server: Any, tmp_path: Path) -> None:
    ran = await bantin(clean, "import", "feed", str(write(tmp_path / "bad.rss", RSS[:400])))
    assert ran.code == 2 and "not well-formed XML" in ran.err
    bomb = ATOM.replace("<feed", '<!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa">]>\n<feed', 1)
    ran = await bantin(clean, "import", "feed", str(write(tmp_path / "bomb.atom", bomb)))
    assert ran.code == 2 and "XML bomb" in ran.err
    server = await aiohttp_server(media_app({}))
    ran = await bantin(clean, "import", "feed", str(server.make_url("/none.rss")))
    assert ran.code == 2 and "HTTP 404" in ran.err
    assert query(clean, "SELECT count(*) AS n FROM articles")[0]["n"] == 0
