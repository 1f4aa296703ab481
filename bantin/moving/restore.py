"""`bantin import bantin DIR`: a folder written by `bantin export` put back into a site.

Into a new site it restores everything: the same articles at the same addresses (their ids are
kept when free), photos (renditions are rebuilt by the workers), categories, tokens, accounts,
settings, redirects, view counts, each article's history and the visit total. Into a site that
already has some of it, it adds only what is missing: an article is known by its uuid, a
category by its slug, a token by its hash, any other row by its key. Articles go through the
same checks as submissions and the same bulk write path as the other imports, so an
interrupted restore goes on where it stopped when run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from redis.asyncio import Redis

from bantin.moving import checking
from bantin.moving.engine import drop_photo
from bantin.moving.export import FORMAT, VERSION
from bantin.moving.progress import Report
from shared import bulk, keys
from shared.articles import Conn, ImageDraft
from shared.history import Past
from shared.photos.store import media_store
from shared.settings import Settings
from shared.tasks import TaskSender

# Restored as they were, when the site lacks the row (ON CONFLICT DO NOTHING). Tokens are
# matched by their hash, and get new ids when theirs are taken (articles follow them).
PLAIN = ("accounts", "site_settings", "site_meta", "counters")


class BadExport(Exception):
    """The folder is not a complete bantin export."""


@dataclass(slots=True)
class Plan:
    folder: Path
    manifest: dict[str, Any]
    articles: int


def open_export(folder: Path) -> Plan:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BadExport(
            "no manifest.json: not a bantin export, or one that did not finish"
        ) from err
    except (OSError, ValueError) as err:
        raise BadExport(f"manifest.json cannot be read: {err}") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BadExport(f"not a {FORMAT} version {VERSION} folder")
    if not (folder / "articles.jsonl").is_file():
        raise BadExport("articles.jsonl is missing")
    return Plan(folder, manifest, int(manifest.get("counts", {}).get("articles", 0)))


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fp:
        for line in fp:
            if line.strip():
                yield json.loads(line)


async def restore(settings: Settings, plan: Plan, report: Report, *, batch: int, jobs: int) -> None:
    database_url, redis_url = settings.require_backends()
    source = f"bantin:{plan.manifest.get('site') or plan.folder.name}"
    sender = TaskSender(redis_url)
    pool = checking.process_pool(jobs)
    redis = Redis.from_url(redis_url, socket_timeout=10)
    try:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            restorer = _Restorer(settings, plan, report, conn, source, jobs)
            await restorer.tables()
            items = _lines(plan.folder / "articles.jsonl")
            while chunk := await asyncio.to_thread(lambda: list(islice(items, batch))):
                written = await restorer.articles(chunk, pool)
                await bulk.after_batch(sender, written)
                views = {
                    keys.article_views(a.id): a.views for a in written.articles if a.id and a.views
                }
                if views:
                    await redis.mset(views)
                report.tick()
            await restorer.redirects()
            await _total(redis, redis_url, database_url, int(plan.manifest.get("total_views") or 0))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        sender.close()
        await redis.aclose()


async def _total(redis: Redis, redis_url: str, database_url: str, exported: int) -> None:
    """The visit total: the exported one, unless this site already counted more."""
    current = int(await redis.get(keys.TOTAL) or 0)
    if exported > current:
        from redis import Redis as SyncRedis

        from shared.counting.count import set_total

        def write() -> None:
            with SyncRedis.from_url(redis_url, socket_timeout=10) as r:
                set_total(r, database_url, exported)

        await asyncio.to_thread(write)


class _Restorer:
    def __init__(
        self, settings: Settings, plan: Plan, report: Report, conn: Conn, source: str, jobs: int
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.plan = plan
        self.report = report
        self.conn = conn
        self.source = source
        self.store = media_store(settings)
        self.categories: dict[str, int] = {}
        self.tokens: dict[int, int] = {}  # exported token id -> this site's

    async def tables(self) -> None:
        conn, folder = self.conn, self.plan.folder
        exported = list(_lines(folder / "categories.jsonl"))
        added: set[str] = set()
        for row in exported:
            cur = await conn.execute(
                "INSERT INTO categories (slug, name, position, retired_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (slug) DO NOTHING RETURNING slug",
                (row["slug"], row["name"], row.get("position", 0), row.get("retired_at")),
            )
            added.update(r["slug"] for r in await cur.fetchall())
        # A retired category's redirect is the id of another in the export: its slug here.
        slugs = {row.get("id"): row["slug"] for row in exported}
        for row in exported:
            if row["slug"] in added and slugs.get(row.get("redirect_to")):
                await conn.execute(
                    "UPDATE categories SET redirect_to ="
                    " (SELECT id FROM categories WHERE slug = %s) WHERE slug = %s",
                    (slugs[row["redirect_to"]], row["slug"]),
                )
        cur = await conn.execute("SELECT id, slug FROM categories")
        self.categories = {r["slug"]: r["id"] for r in await cur.fetchall()}
        for row in _lines(folder / "tokens.jsonl"):
            old_id = row.pop("id")
            await conn.execute(
                "INSERT INTO tokens SELECT (json_populate_record(null::tokens, %s)).*"
                " ON CONFLICT (token_hash) DO NOTHING",
                (json.dumps({**row, "id": await self._free_token_id(old_id)}),),
            )
            cur = await conn.execute(
                "SELECT id FROM tokens WHERE token_hash = (json_populate_record(null::tokens,"
                " %s)).token_hash",
                (json.dumps(row),),
            )
            found = await cur.fetchone()
            assert found is not None
            self.tokens[old_id] = found["id"]
        await self._sequence("tokens")
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        present = {r["table_name"] for r in await cur.fetchall()}
        for table in PLAIN:
            if table not in present:
                if (folder / f"{table}.jsonl").exists():
                    self.report.skip(f"{table}: this site has no such table")
                continue
            for row in _lines(folder / f"{table}.jsonl"):
                if table == "site_settings" and row.get("updated_by") is not None:
                    row["updated_by"] = self.tokens.get(row["updated_by"])
                try:
                    await conn.execute(
                        f"INSERT INTO {table} SELECT (json_populate_record(null::{table}, %s)).*"
                        " ON CONFLICT DO NOTHING",
                        (json.dumps(row),),
                    )
                except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as err:
                    # This site's table differs from the exported one (a newer schema).
                    self.report.fail(table, f"{table}: {err}".splitlines()[0], counted=False)
            await self._sequence(table)

    async def _free_token_id(self, wanted: int) -> int | None:
        cur = await self.conn.execute("SELECT 1 FROM tokens WHERE id = %s", (wanted,))
        if await cur.fetchone() is None:
            return wanted
        cur = await self.conn.execute("SELECT nextval('tokens_id_seq') AS id")
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def _sequence(self, table: str) -> None:
        """Rows inserted with their ids: the table's sequence moves past them."""
        cur = await self.conn.execute(
            "SELECT pg_get_serial_sequence(%s, 'id') AS seq FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s AND column_name = 'id'",
            (table, table),
        )
        row = await cur.fetchone()
        if row and row["seq"]:
            await self.conn.execute(
                f"SELECT setval(%s, max(id)) FROM {table} HAVING max(id) > coalesce("
                " (SELECT last_value FROM pg_sequences"
                "  WHERE format('%%I.%%I', schemaname, sequencename) = %s), 0)",
                (row["seq"], row["seq"]),
            )

    async def articles(self, chunk: list[dict[str, Any]], pool: Executor | None) -> bulk.Written:
        cur = await self.conn.execute(
            "SELECT uuid::text AS uuid FROM articles WHERE uuid = ANY(%s::uuid[])",
            ([a["uuid"] for a in chunk],),
        )
        present = {r["uuid"] for r in await cur.fetchall()}
        if present:
            self.report.skip("already present", len(present))
        todo = [a for a in chunk if a["uuid"] not in present]
        photos = await asyncio.to_thread(self._photos, todo)
        datas = [self._data(a, photos) for a in todo]
        checked = await checking.check_all(
            pool, self.jobs, datas, max(self.settings.max_photos, 1000)
        )
        rows = []
        for a, data, (submission, errors) in zip(todo, datas, checked, strict=True):
            if submission is None:
                reason = "; ".join(f"{e['field']} {e['message']}" for e in errors)
                self.report.fail(a["uuid"], f"invalid: {reason}")
                continue
            if submission.category not in self.categories:
                self.report.fail(a["uuid"], f"invalid: no category {submission.category!r}")
                continue
            try:
                rows.append(self._row(a, submission, data))
            except ValueError as err:  # a hand-edited export's time that is not one
                self.report.fail(a["uuid"], f"invalid: {err}")
        written = await bulk.write_batch(self.conn, rows)
        for row in rows:
            self.report.done(photos=len(row.draft.images))
        return written

    def _photos(self, todo: list[dict[str, Any]]) -> set[str]:
        """Copy the batch's photos into the store (checking each one's SHA-256); the set of
        those that are there."""
        ok: set[str] = set()
        folder = self.plan.folder / "photos"
        for article in todo:
            for image in article["images"]:
                sha = image["sha256"]
                if sha in ok:
                    continue
                if self.store.original(sha).exists():
                    ok.add(sha)
                    continue
                source = folder / sha[:2] / sha
                temp = self.store.new_temp()
                try:
                    shutil.copyfile(source, temp)
                    digest = hashlib.sha256()
                    with temp.open("rb") as fp:
                        while block := fp.read(1024 * 1024):
                            digest.update(block)
                    if digest.hexdigest() != sha:
                        raise OSError(f"{source} does not match its SHA-256 (damaged)")
                    self.store.adopt_original(temp, sha)
                    ok.add(sha)
                except OSError as err:
                    temp.unlink(missing_ok=True)
                    self.report.fail(article["uuid"], f"photo: {err}", counted=False)
        return ok

    def _data(self, a: dict[str, Any], photos: set[str]) -> dict[str, Any]:
        body = a["body_source"]
        images = []
        for image in a["images"]:
            if image["sha256"] in photos:
                images.append({k: image[k] for k in ("part", "caption", "role")})
            else:
                body = drop_photo(body, image["part"])
        return {
            "title": a["title"],
            "category": a["category"],
            "summary": a["summary"],
            "body": body,
            "body_format": a["body_format"],
            "author": a["author"],
            "unit": a["unit"],
            "published_at": a["published_at"],
            "tags": a["tags"],
            "gallery_title": a["gallery_title"],
            "images": images,
        }

    def _row(
        self, a: dict[str, Any], submission: checking.Submission, data: dict[str, Any]
    ) -> bulk.BulkArticle:
        by_part = {image["part"]: image for image in a["images"]}
        images = tuple(
            ImageDraft(
                part=i["part"],
                caption=i["caption"],
                role=i["role"],
                sha256=by_part[i["part"]]["sha256"],
                format=by_part[i["part"]]["format"],
                bytes=by_part[i["part"]]["bytes"],
                width=by_part[i["part"]]["width"],
                height=by_part[i["part"]]["height"],
            )
            for i in submission.images
        )
        status = a["status"]
        if status == "published" and images:
            status = "processing"  # published again once the workers have rendered its photos
        return bulk.BulkArticle(
            draft=checking.draft(submission, self.categories[submission.category], images),
            category_slug=submission.category,
            source=self.source,
            item=a["uuid"],
            status=status,
            uuid=uuid.UUID(a["uuid"]),
            id=a["id"],
            old_paths=(a["path"],),  # when its id was taken here, the old address follows it
            error=a.get("error"),
            submitted_by=self.tokens.get(a["submitted_by"]) if a.get("submitted_by") else None,
            created_at=_moment(a, "created_at"),
            updated_at=_moment(a, "updated_at"),
            version=a["version"],
            views=int(a.get("views") or 0),
            history=tuple(
                Past(
                    e["action"],
                    _moment(e, "at"),
                    self.tokens.get(e["token"]) if e.get("token") is not None else None,
                    e.get("note") or "",
                )
                for e in a.get("history") or ()  # exports before it was there have none
            ),
        )

    async def redirects(self) -> None:
        for row in _lines(self.plan.folder / "redirects.jsonl"):
            if row.get("article"):
                await self.conn.execute(
                    "INSERT INTO redirects (old_path, article_id)"
                    " SELECT %s, id FROM articles WHERE uuid = %s ON CONFLICT DO NOTHING",
                    (row["old_path"], row["article"]),
                )
            elif row.get("new_path"):
                await self.conn.execute(
                    "INSERT INTO redirects (old_path, new_path) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (row["old_path"], row["new_path"]),
                )


def _moment(row: dict[str, Any], name: str) -> datetime:
    """A time of the export's own record (created, updated, an event of the history): bantin
    writes each with its UTC offset; one without (a hand-edited file) is read as UTC, not in
    whatever zone the database server has. (`published_at` is the article's, checked as any
    submission's: without an offset it is refused, naming the field.)"""
    try:
        when = datetime.fromisoformat(row[name])
    except (TypeError, ValueError):
        raise ValueError(f"{name} {row[name]!r} is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
