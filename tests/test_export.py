"""`bantin export DIR` then `bantin import bantin DIR`: a whole site into an empty one gives the
same articles at the same addresses, the same photos and the same visit total; into a site that
has some of it, only what is missing is added."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import redis as redis_lib

from bantin.moving import export
from bantin.moving.progress import Report
from shared import keys
from shared.articles import TEXT_COLUMNS
from shared.settings import Settings
from tests.conftest import make_token, publisher, reset
from tests.fixtures.moving import Post, bantin, eventually, jpeg, media_app, query, write, wxr

ARTICLES = (
    "SELECT a.id, a.uuid, a.title, a.summary, a.body_html, a.author, a.status, a.published_at,"
    " a.tags, c.slug AS category FROM articles a JOIN categories c ON c.id = a.category_id"
    " ORDER BY a.id"
)

HISTORY = (
    "SELECT e.article_id, e.action, e.note, e.at, t.name AS who FROM article_events e"
    " LEFT JOIN tokens t ON t.id = e.token_id ORDER BY e.id"
)


def total(settings: Settings) -> int:
    r = redis_lib.Redis.from_url(settings.require_backends()[1])
    try:
        return int(r.get(keys.TOTAL) or 0)
    finally:
        r.close()


async def all_published(settings: Settings) -> bool:
    rows = query(settings, "SELECT count(*) AS n FROM articles WHERE status <> 'published'")
    return bool(rows[0]["n"] == 0)


async def test_export_then_import_into_an_empty_site(
    clean: Settings, worker: Any, aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    photo = jpeg()
    server = await aiohttp_server(media_app({"/anh.jpg": photo}))
    media = str(server.make_url("")).rstrip("/")
    posts = [
        Post(1, "Hội nghị có ảnh", f'Có ảnh.\n\n<img src="{media}/anh.jpg" alt="Ảnh">'),
        Post(2, "Tin không ảnh", "Văn bản.", tags=("pháp luật",)),
        Post(3, "Tin thứ ba", "Đoạn một.\n\nĐoạn hai.", category=("thong-bao", "Thông báo")),
    ]
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "wp.xml", wxr(posts))))
    assert ran.code == 0, ran.out + ran.err
    await eventually(lambda: all_published(clean), "the photo article to publish")
    await make_token(clean, "submitter", "Văn phòng")
    assert (await bantin(clean, "counters", "set-total", "5336272")).code == 0
    first = query(clean, ARTICLES)
    for action, note, at in (("submitted", "", "09:00"), ("returned", "Sửa lại tít", "10:30")):
        query(
            clean,
            "INSERT INTO article_events (article_id, token_id, action, note, at)"
            " SELECT %s, id, %s, %s, %s FROM tokens RETURNING id",
            first[0]["id"],
            action,
            note,
            f"2024-05-06 {at}+07",
        )
    history_before = query(clean, HISTORY)
    assert len(history_before) == 2
    r = redis_lib.Redis.from_url(clean.require_backends()[1])
    r.set(keys.article_views(first[0]["id"]), 42)
    r.close()
    query(
        clean, "INSERT INTO site_settings (key, value) VALUES ('link_blocks', '[]') RETURNING key"
    )
    csv = write(tmp_path / "r.csv", "/gioi-thieu.html,/thong-bao/\n")
    assert (await bantin(clean, "redirects", "load", str(csv))).code == 0

    folder = tmp_path / "backup"
    ran = await bantin(clean, "export", str(folder))
    assert ran.code == 0, ran.out + ran.err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["articles"] == 3 and manifest["total_views"] == 5336272
    sha = hashlib.sha256(photo).hexdigest()
    assert (folder / "photos" / sha[:2] / sha).read_bytes() == photo
    tokens = (folder / "tokens.jsonl").read_text()
    assert "token_hash" in tokens and "bt_" not in tokens
    lines = [json.loads(x) for x in (folder / "articles.jsonl").read_text().splitlines()]
    assert [a["title"] for a in lines] == [p.title for p in posts]
    assert lines[0]["views"] == 42 and lines[0]["status"] == "published"
    assert lines[0]["images"][0]["sha256"] == sha
    assert [(e["action"], e["who"], e["note"]) for e in lines[0]["history"]] == [
        ("submitted", "Văn phòng", ""),
        ("returned", "Văn phòng", "Sửa lại tít"),
    ]
    images_before = query(clean, "SELECT sha256, part, role, caption FROM images")

    reset(clean)  # a new, empty site
    ran = await bantin(clean, "import", "bantin", str(folder))
    assert ran.code == 0, ran.out + ran.err
    assert "imported 3" in ran.out
    await eventually(lambda: all_published(clean), "the restored photo article to publish")
    assert query(clean, ARTICLES) == first  # same ids, uuids, text, times, categories
    assert query(clean, "SELECT sha256, part, role, caption FROM images") == images_before
    assert query(clean, "SELECT count(*) AS n FROM renditions")[0]["n"] > 0
    assert total(clean) == 5336272
    assert query(clean, "SELECT name FROM tokens") == [{"name": "Văn phòng"}]
    assert query(clean, HISTORY) == history_before  # who did what, when
    assert query(clean, "SELECT key FROM site_settings") == [{"key": "link_blocks"}]
    site = await publisher(aiohttp_client, clean)
    page = await site.get(f"/thong-bao/tin-thu-ba-{first[2]['id']}")
    assert page.status == 200
    old = await site.get("/2022/01/12/bai-1/", allow_redirects=False)
    assert old.status == 301 and old.headers["Location"].endswith(f"-{first[0]['id']}")
    assert (await site.get("/gioi-thieu.html", allow_redirects=False)).status == 301
    views = await site.get("/api/v1/stats")
    assert (await views.json())["total"] >= 5336272

    # Into a site that has some of it: only what is missing comes in.
    query(clean, "DELETE FROM articles WHERE id = %s RETURNING id", first[1]["id"])
    ran = await bantin(clean, "import", "bantin", str(folder))
    assert ran.code == 0, ran.out + ran.err
    assert "imported 1" in ran.out and "already present: 2" in ran.out
    assert query(clean, ARTICLES) == first


class _WritesDuringExport(Report):
    """The export's report, which has an article written (and committed) by another
    connection right after the export has counted the articles, and after each chunk: the
    rows a site writes while an export runs."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("export", io.StringIO())
        self.settings = settings
        self.counted: int | None = None
        self.written: list[int] = []

    def _write_one(self) -> None:
        columns = ", ".join(TEXT_COLUMNS)
        (row,) = query(
            self.settings,
            f"INSERT INTO articles (uuid, {columns}, status) SELECT gen_random_uuid(), {columns},"
            " 'published' FROM articles ORDER BY id LIMIT 1 RETURNING id",
        )
        query(
            self.settings,
            "INSERT INTO redirects (old_path, article_id) VALUES (%s, %s) RETURNING old_path",
            f"/cu/{row['id']}.html",
            row["id"],
        )
        self.written.append(row["id"])

    def set_total(self, total: int | None) -> None:
        super().set_total(total)
        self.counted = total
        self._write_one()

    def done(self, n: int = 1, photos: int = 0) -> None:
        super().done(n, photos)
        self._write_one()


async def test_export_is_one_snapshot_while_articles_are_written(
    clean: Settings, tmp_path: Path
) -> None:
    """Articles written while the export runs are in none of its files, or in all of them
    consistently: the export reads one snapshot (REPEATABLE READ)."""
    posts = [Post(i, f"Tin số {i}", f"Nội dung {i}.") for i in range(1, 8)]
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "wp.xml", wxr(posts))))
    assert ran.code == 0, ran.out + ran.err
    before = query(clean, "SELECT id FROM articles ORDER BY id")
    database_url, redis_url = clean.require_backends()
    report = _WritesDuringExport(clean)
    folder = tmp_path / "backup"
    await asyncio.to_thread(export.export, clean, database_url, redis_url, folder, report)

    assert report.written  # the site did write while the export ran
    lines = [json.loads(x) for x in (folder / "articles.jsonl").read_text().splitlines()]
    assert [a["id"] for a in lines] == [r["id"] for r in before] and report.counted == len(before)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["articles"] == len(before)
    redirects = [json.loads(x) for x in (folder / "redirects.jsonl").read_text().splitlines()]
    exported = {a["uuid"] for a in lines}
    assert all(r["article"] in exported for r in redirects if r["article"])


async def test_a_hand_edited_export_time_is_read_as_utc_or_refused_by_name(
    clean: Settings, tmp_path: Path
) -> None:
    """An export edited by hand: a time written without its UTC offset is read as UTC (the
    binary COPY takes no time without a zone); one that is no time fails that article alone,
    named, and the import ends non-zero."""
    posts = [Post(1, "Tin một", "Văn bản một."), Post(2, "Tin hai", "Văn bản hai.")]
    ran = await bantin(clean, "import", "wordpress", str(write(tmp_path / "wp.xml", wxr(posts))))
    assert ran.code == 0, ran.out + ran.err
    folder = tmp_path / "backup"
    assert (await bantin(clean, "export", str(folder))).code == 0
    path = folder / "articles.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["created_at"] = "2021-03-04T05:06:07"
    lines[1]["updated_at"] = "hôm qua"
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in lines))

    reset(clean)
    ran = await bantin(clean, "import", "bantin", str(folder))
    assert ran.code != 0, ran.out + ran.err
    assert "imported 1" in ran.out, ran.out
    assert "updated_at 'hôm qua' is not an ISO 8601 time" in ran.out + ran.err
    rows = query(clean, "SELECT title, created_at FROM articles")
    assert [r["title"] for r in rows] == ["Tin một"]
    assert rows[0]["created_at"].isoformat() == "2021-03-04T05:06:07+00:00"
