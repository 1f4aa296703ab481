"""`bantin export DIR`: the whole site in a folder, a consistent snapshot taken while it runs.

Everything is read in one REPEATABLE READ transaction, so the files agree with each other
(no photo row without its article, no redirect to an article written after the listing). The
folder holds JSON Lines files, the original photos (content-addressed, as in the media store;
renditions are rebuilt by the workers of the site that imports it), and manifest.json, written
last: a folder without it is an export that did not finish.

    manifest.json       format, version, time, counts, the visit total
    articles.jsonl      one article a line, in the API's shape, with status, views, its source
                        text, its photos' SHA-256 and its history (who did what, when)
    categories.jsonl, tokens.jsonl (hashes only), accounts.jsonl (when the site has accounts),
    site_settings.jsonl, site_meta.jsonl, redirects.jsonl, counters.jsonl
    photos/ab/<sha256>  the original photos
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from psycopg import IsolationLevel
from redis import Redis

from bantin.moving.progress import Report
from shared import db, keys
from shared.history import EVENTS_FROM, WHO
from shared.photos.store import MediaStore, media_store
from shared.settings import Settings

FORMAT = "bantin-export"
VERSION = 1
# Tables exported row for row (row_to_json): what restore puts back as it was.
TABLES = ("categories", "tokens", "accounts", "site_settings", "site_meta", "counters")
CHUNK = 1000

_ARTICLES = f"""
    SELECT a.id, a.uuid, a.status, a.error, a.title, c.slug AS category, a.summary,
           a.body_html AS body, a.body_source, a.body_format, a.author, a.unit, a.tags,
           a.gallery_title, a.published_at, a.created_at, a.updated_at, a.version,
           a.submitted_by, a.slug, coalesce(v.views, 0) AS views,
           coalesce((SELECT json_agg(json_build_object(
                'part', i.part, 'caption', i.caption, 'role', i.role, 'sha256', i.sha256,
                'format', i.format, 'bytes', i.bytes, 'width', i.width, 'height', i.height,
                'error', i.error) ORDER BY i.position)
                FROM images i WHERE i.article_id = a.id), '[]') AS images,
           coalesce((SELECT json_agg(json_build_object(
                'action', e.action, 'at', e.at, 'who', {WHO}, 'token', e.token_id,
                'note', e.note) ORDER BY e.id)
                FROM {EVENTS_FROM} WHERE e.article_id = a.id), '[]') AS history
    FROM articles a JOIN categories c ON c.id = a.category_id
    LEFT JOIN article_views v ON v.article_id = a.id
    ORDER BY a.id
"""
_REDIRECTS = """
    SELECT r.old_path, a.uuid AS article, r.new_path
    FROM redirects r LEFT JOIN articles a ON a.id = r.article_id ORDER BY r.old_path
"""


class ExportError(Exception):
    """The export cannot be written; the message says why."""


def export(
    settings: Settings, database_url: str, redis_url: str, folder: Path, report: Report
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # An earlier export's files (and what an interrupted one left) are replaced; others are not.
    if any(p for p in folder.iterdir() if p.name not in _NAMES and p.suffix != ".part"):
        raise ExportError(f"{folder} holds other files: export into a new or empty folder")
    (folder / "manifest.json").unlink(missing_ok=True)  # incomplete until written again
    store = media_store(settings)
    counts: dict[str, int] = {}
    with db.connect(database_url) as conn, Redis.from_url(redis_url, socket_timeout=10) as r:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            present = {
                row["table_name"]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
            count = conn.execute("SELECT count(*) AS n FROM articles").fetchone()
            report.set_total(count["n"] if count else None)
            for table in TABLES:
                if table in present:
                    rows = conn.execute(f"SELECT row_to_json(t) AS j FROM {table} t")
                    counts[table] = _write(folder, table, (row["j"] for row in rows))
            counts["redirects"] = _write(
                folder, "redirects", (_jsonable(row) for row in conn.execute(_REDIRECTS))
            )
            counts["articles"], counts["photos"] = _articles(conn, r, store, folder, report)
            total = conn.execute("SELECT value FROM counters WHERE key = 'total'").fetchone()
        live = int(r.get(keys.TOTAL) or 0)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "site": settings.public_url,
        "counts": counts,
        # Redis holds the live count; PostgreSQL its copy of a minute ago.
        "total_views": max(live, int(total["value"]) if total else 0),
    }
    _atomic(folder / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


_NAMES = {f"{t}.jsonl" for t in (*TABLES, "redirects", "articles")} | {"manifest.json", "photos"}


def _articles(
    conn: Any, r: Redis, store: MediaStore, folder: Path, report: Report
) -> tuple[int, int]:
    photos = folder / "photos"
    copied = 0
    count = 0
    temp = folder / "articles.jsonl.part"
    with temp.open("w", encoding="utf-8") as out, conn.cursor(name="bantin_export") as cur:
        cur.itersize = CHUNK
        cur.execute(_ARTICLES)
        while rows := cur.fetchmany(CHUNK):
            # Redis holds the live view counts; the table its copy of a minute ago.
            live = r.mget([keys.article_views(row["id"]) for row in rows])
            for row, views in zip(rows, live, strict=True):
                row["views"] = max(row["views"], int(views) if views else 0)
                row["path"] = f"/{row['category']}/{row.pop('slug')}-{row['id']}"
                for image in row["images"]:
                    if _copy_photo(store, photos, image["sha256"]):
                        copied += 1
                    elif not (photos / image["sha256"][:2] / image["sha256"]).exists():
                        report.fail(str(row["uuid"]), f"photo: {image['sha256']} is missing")
                _line(out, _jsonable(row))
                count += 1
            report.done(len(rows))
            report.tick()
    os.replace(temp, folder / "articles.jsonl")
    return count, copied


def _copy_photo(store: MediaStore, photos: Path, sha: str) -> bool:
    target = photos / sha[:2] / sha
    source = store.original(sha)
    if target.exists() or not source.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    try:
        os.link(source, part)  # same file system: no copy (originals never change)
    except OSError:
        shutil.copyfile(source, part)
    os.replace(part, target)
    return True


def _write(folder: Path, name: str, rows: Any) -> int:
    temp = folder / f"{name}.jsonl.part"
    n = 0
    with temp.open("w", encoding="utf-8") as out:
        for row in rows:
            _line(out, row)
            n += 1
    os.replace(temp, folder / f"{name}.jsonl")
    return n


def _line(out: IO[str], row: Any) -> None:
    out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    out.write("\n")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else str(v) if k in ("uuid", "article") and v
        else v
        for k, v in row.items()
    }  # fmt: skip


def _atomic(path: Path, text: str) -> None:
    temp = path.with_suffix(".part")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
