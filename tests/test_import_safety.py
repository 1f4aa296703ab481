"""Imports that cannot finish: bad sources end with a clear message and nothing written; a photo
that hangs fails alone; an interrupted or crashed run goes on where it stopped."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.fixtures.moving import OLD_SITE, Post, bantin, env, jpeg, media_app, query, write, wxr


def count(settings: Settings, table: str = "articles") -> int:
    return int(query(settings, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def good_posts(n: int, start: int = 1) -> list[Post]:
    return [
        Post(i, f"Tin số {i}: Viện kiểm sát nhân dân tỉnh", f"Nội dung bài {i}.\n\nĐoạn hai.")
        for i in range(start, start + n)
    ]


async def test_malformed_xml_is_refused_before_anything_is_written(
    clean: Settings, tmp_path: Path
) -> None:
    text = wxr(good_posts(3))
    # Good posts first, then a broken element: the whole file is checked before any write.
    broken = text.replace("</channel>", "<item><title>Hỏng</titel></item></channel>")
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "bad.xml", broken)))
    assert ran.code == 2
    assert (
        "not well-formed XML: Opening and ending tag mismatch: title line" in ran.err
        and "nothing was imported" in ran.err
    )
    assert count(clean) == 0 and count(clean, "import_items") == 0


async def test_an_xml_bomb_is_refused(clean: Settings, tmp_path: Path) -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    bomb = (
        wxr(good_posts(1))
        .replace("<rss", f"<!DOCTYPE rss [{entities}]>\n<rss", 1)
        .replace("Nội dung bài 1.", "&lol9;")
    )
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "bomb.xml", bomb)))
    assert ran.code == 2
    assert "XML bomb" in ran.err and "nothing was imported" in ran.err
    assert count(clean) == 0


async def test_a_2gb_file_and_a_giant_item_end_quickly_with_a_message(
    clean: Settings, tmp_path: Path
) -> None:
    head = wxr(good_posts(2)).split("</channel>")[0]
    huge = tmp_path / "huge.xml"
    with huge.open("w", encoding="utf-8") as fp:
        fp.write(head)
        fp.truncate(2 * 1024**3)  # 2 GB, sparse: nothing after the posts is XML
    ran = await bantin(clean, "import", "wordpress", str(huge), timeout=120)
    assert ran.code == 2 and "not well-formed XML" in ran.err, ran.err
    assert count(clean) == 0

    giant = tmp_path / "giant.xml"
    with giant.open("w", encoding="utf-8") as fp:
        fp.write(head)
        fp.write("<item><title>Khổng lồ</title>")
        for _ in range(34):  # comments of 1 MiB each: the item, not one text, is too large
            fp.write(f"<wp:comment><wp:comment_content>{'x' * 1024 * 1024}")
            fp.write("</wp:comment_content></wp:comment>")
        fp.write("</item></channel></rss>")
    ran = await bantin(clean, "import", "wordpress", str(giant), timeout=120)
    assert ran.code == 2 and "more than 32 MiB without the end of an item" in ran.err, ran.err
    assert count(clean) == 0

    long = tmp_path / "long.xml"
    with long.open("w", encoding="utf-8") as fp:
        fp.write(head)
        fp.write(f"<item><title>Dài</title><content:encoded>{'x' * 11 * 1024 * 1024}")
        fp.write("</content:encoded></item></channel></rss>")
    ran = await bantin(clean, "import", "wordpress", str(long), timeout=120)
    assert ran.code == 2 and "a text over 10 MB" in ran.err, ran.err
    assert count(clean) == 0


async def test_an_export_with_many_tags_before_its_posts_is_read(
    clean: Settings, tmp_path: Path
) -> None:
    """A news site's export lists its tags (tens of thousands, more MiB than an item may have)
    before the first post: they are read and let go one by one, not counted as one item."""
    head, tail = wxr(good_posts(2)).split("<item>", 1)
    tags = tmp_path / "tags.xml"
    with tags.open("w", encoding="utf-8") as fp:
        fp.write(head)
        for n in range(340_000):  # about 34 MiB
            fp.write(
                f"<wp:tag><wp:term_id>{n}</wp:term_id><wp:tag_slug>the-{n}</wp:tag_slug>"
                f"<wp:tag_name><![CDATA[Thẻ {n}]]></wp:tag_name></wp:tag>\n"
            )
        fp.write("<item>" + tail)
    assert tags.stat().st_size > 32 * 1024 * 1024
    ran = await bantin(clean, "import", "wordpress", str(tags), timeout=120)
    assert ran.code == 0, ran.err
    assert count(clean) == 2


async def test_missing_file_says_so(clean: Settings, tmp_path: Path) -> None:
    ran = await bantin(clean, "import", "wordpress", str(tmp_path / "none.xml"))
    assert ran.code == 2 and "No such file" in ran.err


async def test_a_photo_that_hangs_fails_alone(
    clean: Settings, aiohttp_server: Any, tmp_path: Path
) -> None:
    server = await aiohttp_server(media_app({"/ok.jpg": jpeg()}))
    media = str(server.make_url("")).rstrip("/")
    posts = [
        Post(1, "Ảnh treo", f'Ảnh không về.<img src="{media}/hang/anh.jpg">'),
        Post(2, "Bài thường", "Không có ảnh."),
    ]
    export = write(tmp_path / "export.xml", wxr(posts))
    ran = await bantin(clean, "import", "wordpress", str(export), "--photo-timeout", "2")
    assert ran.code == 1
    assert "hang/anh.jpg: no complete answer within 2 s" in ran.out
    assert "imported 2" in ran.out
    rows = query(clean, "SELECT title, status, body_html FROM articles ORDER BY title")
    assert [(r["title"], r["status"]) for r in rows] == [
        ("Bài thường", "published"),
        ("Ảnh treo", "published"),
    ]
    assert "<img" not in rows[1]["body_html"]


async def test_media_from_a_local_copy_of_uploads(clean: Settings, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads" / "2022" / "01"
    uploads.mkdir(parents=True)
    (uploads / "anh.jpg").write_bytes(jpeg())
    posts = [
        Post(1, "Ảnh từ bản sao", f'<img src="{OLD_SITE}/wp-content/uploads/2022/01/anh.jpg">'),
        Post(
            2,
            "Ra ngoài thư mục",
            f'<p>Ảnh bị từ chối.</p><img src="{OLD_SITE}/wp-content/uploads/../../secret.jpg">',
        ),
    ]
    (tmp_path / "secret.jpg").write_bytes(jpeg())
    export = write(tmp_path / "export.xml", wxr(posts))
    ran = await bantin(
        clean, "import", "wordpress", str(export), "--media-from", str(tmp_path / "uploads")
    )
    assert "imported 2" in ran.out, ran.out + ran.err
    images = query(clean, "SELECT a.title FROM images i JOIN articles a ON a.id = i.article_id")
    assert [r["title"] for r in images] == ["Ảnh từ bản sao"]
    assert ran.code == 1 and "secret.jpg" in ran.out


async def _interrupt(settings: Settings, export: Path, sig: int, after: int) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bantin.cli",
        "import",
        "wordpress",
        str(export),
        "--batch",
        "20",
        "--jobs",
        "1",
        env=env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    while count(settings, "import_items") < after:
        assert proc.returncode is None, "the import ended before it could be interrupted"
        await asyncio.sleep(0.05)
    proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_an_interrupted_or_crashed_import_goes_on_where_it_stopped(
    clean: Settings, tmp_path: Path
) -> None:
    total = 6000
    export = write(tmp_path / "export.xml", wxr(good_posts(total)))

    code = await _interrupt(clean, export, signal.SIGINT, 100)  # Ctrl-C
    assert code == 130
    first = count(clean)
    # Whole batches only: every article has its record, every record its article.
    assert 100 <= first < total and first % 20 == 0
    assert count(clean, "import_items") == first

    code = await _interrupt(clean, export, signal.SIGKILL, first + 100)  # a crash
    assert code == -signal.SIGKILL
    second = count(clean)
    assert first < second < total and second % 20 == 0
    assert count(clean, "import_items") == second

    ran = await bantin(clean, "import", "wordpress", str(export))
    assert ran.code == 0, ran.err
    assert f"imported {total - second}" in ran.out and f"already imported: {second}" in ran.out
    assert count(clean) == total
    dupes = query(clean, "SELECT title FROM articles GROUP BY title HAVING count(*) > 1")
    assert dupes == []
