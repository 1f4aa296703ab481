"""The import engine every source feeds (WordPress, a feed): items in, articles out, by batch.

For each batch: items already brought in by an earlier run are skipped (idempotent, resumable);
the photos the batch refers to are fetched a few at a time; the articles are checked and
sanitized by the submission checks, in a process pool when there are enough of them; then the
batch is written in one transaction (shared/bulk.py) and the work that follows is sent in bulk.
"""

from __future__ import annotations

import asyncio
import functools
import html
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import unquote, urljoin

import psycopg
from psycopg.rows import dict_row

from bantin.moving import checking
from bantin.moving.photos import Fetcher, PhotoFailed, Stored
from bantin.moving.progress import Report
from shared import articles, bulk
from shared.articles import Conn, ImageDraft
from shared.settings import Settings
from shared.tasks import TaskSender
from shared.text import clean_text, slugify

BATCH = 500
WRITERS = 2  # batches written at once
CHECKING = 2  # batches checked at once
DEFAULT_CATEGORY = ("chua-phan-loai", "Chưa phân loại")  # WordPress's "Uncategorized"

_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\b(src|alt)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


@dataclass(slots=True)
class Photo:
    url: str
    role: str  # inline, cover, gallery
    caption: str = ""


@dataclass(slots=True)
class Item:
    """One item of a source, as the source reads it.

    `data` is the article as the API takes it, except that its body may carry `<img src=URL>`
    for photos on the old site; the engine turns those into the article's own photos.
    """

    item: str
    data: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # why it is not imported (a draft, a page, ...)
    base_url: str = ""  # against which relative photo URLs resolve
    photos: list[Photo] = field(default_factory=list)  # cover and gallery photos
    captions: dict[str, str] = field(default_factory=dict)  # inline photo URL -> caption
    old_paths: tuple[str, ...] = ()
    category_name: str = ""  # the name to give the category when it must be created


@dataclass(slots=True)
class _Prepared:
    item: Item
    data: dict[str, Any]
    photos: dict[str, Photo]  # part -> photo, in order
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Checked:
    prepared: _Prepared
    submission: checking.Submission
    photos: dict[str, Stored | PhotoFailed]  # part -> what came of it


async def _connect(database_url: str) -> Conn:
    return await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    )


class Importer:
    def __init__(
        self,
        settings: Settings,
        source: str,
        report: Report,
        fetcher: Fetcher,
        *,
        batch: int = BATCH,
        jobs: int = 1,
    ) -> None:
        self.settings = settings
        self.source = source
        self.report = report
        self.fetcher = fetcher
        self.batch = batch
        self.jobs = jobs
        self._categories: dict[str, int] = {}
        self._retired: dict[str, str | None] = {}  # slug -> where its articles go, or None
        self._seen: set[str] = set()  # items of this run (a few MB for 10^5 posts)

    async def run(self, items: Iterator[Item]) -> None:
        """Three stages run side by side: the next batch is read from the source (in a
        thread), the one before it has its photos fetched and its articles checked (in the
        pool), and PostgreSQL writes the ones before those, WRITERS batches at a time (each
        in its own transaction, on its own connection: generating an article's search vector
        and indexing it is PostgreSQL's own work, one core per connection). Reading and
        checking in turn, rather than side by side, left the writers waiting on them a third
        of the time."""
        database_url, redis_url = self.settings.require_backends()
        sender = TaskSender(redis_url)
        pool = checking.process_pool(self.jobs)
        read: asyncio.Queue[list[Item]] = asyncio.Queue(maxsize=1)
        ready: asyncio.Queue[list[_Checked] | None] = asyncio.Queue(maxsize=WRITERS)

        async def parse() -> None:
            # The source's iterator is only ever advanced here, one batch at a time.
            while chunk := await asyncio.to_thread(lambda: list(islice(items, self.batch))):
                await read.put(chunk)
            await read.put([])

        async def check() -> None:
            async with await _connect(database_url) as conn:
                for c in await articles.list_categories(conn, retired=True):
                    if c.retired_at is None:
                        self._categories[c.slug] = c.id
                    else:
                        self._retired[c.slug] = c.redirect_to
                # CHECKING batches in the pool at once: it has the next one to work on while
                # the results of one come back (with one, it stood idle a third of the time).
                started: deque[asyncio.Future[list[_Checked]]] = deque()
                try:
                    while chunk := await read.get():
                        started.append(await self._checking(conn, pool, chunk))
                        if len(started) == CHECKING:
                            await ready.put(await started.popleft())
                    while started:
                        await ready.put(await started.popleft())
                finally:
                    for left in started:
                        left.cancel()
            for _ in range(WRITERS):
                await ready.put(None)

        async def write() -> None:
            async with await _connect(database_url) as conn:
                while (batch := await ready.get()) is not None:
                    await self._write(conn, sender, batch)
                    self.report.tick()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(parse())
                group.create_task(check())
                for _ in range(WRITERS):
                    group.create_task(write())
        except BaseExceptionGroup as group_error:
            # One stage's failure stops the other; the caller sees the first cause.
            raise group_error.exceptions[0] from None
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            sender.close()

    async def _checking(
        self, conn: Conn, pool: Executor | None, chunk: list[Item]
    ) -> asyncio.Future[list[_Checked]]:
        """The chunk's articles as they will be once checked: what is already imported is
        left out, the photos are fetched, and the check is started (it runs in the pool
        while the caller goes on)."""
        for item in chunk:
            if item.skip:
                self.report.skip(item.skip)
        wanted = [i for i in chunk if not i.skip]
        if not wanted:
            return asyncio.ensure_future(asyncio.sleep(0, []))
        known = await bulk.imported_items(conn, self.source, [i.item for i in wanted])
        # An item twice in a source (a broken export) comes in once.
        known |= self._seen.intersection(i.item for i in wanted)
        if known:
            self.report.skip("already imported", sum(1 for i in wanted if i.item in known))
        unique = {i.item: i for i in wanted if i.item not in known}
        self._seen.update(unique)
        prepared = [self._prepare(i) for i in unique.values()]
        fetched = await self.fetcher.fetch_all(
            {p.url for one in prepared for p in one.photos.values()}
        )
        for one in prepared:
            self._place_photos(one, fetched)
        return asyncio.ensure_future(self._checked(pool, prepared, fetched))

    async def _checked(
        self,
        pool: Executor | None,
        prepared: list[_Prepared],
        fetched: dict[str, Stored | PhotoFailed],
    ) -> list[_Checked]:
        checked = await checking.check_all(
            pool, self.jobs, [one.data for one in prepared], self.settings.max_photos
        )
        out = []
        for one, (submission, errors) in zip(prepared, checked, strict=True):
            if submission is None:
                reason = "; ".join(f"{e['field']} {e['message']}" for e in errors)
                self.report.fail(one.item.item, f"invalid: {reason}")
                continue
            stored = {part: fetched[photo.url] for part, photo in one.photos.items()}
            out.append(_Checked(one, submission, stored))
        return out

    async def _write(self, conn: Conn, sender: TaskSender, batch: list[_Checked]) -> None:
        rows = []
        for checked in batch:
            category = checked.submission.category
            if category in self._retired:
                # Never into a retired category: where it sends its readers, or not at all.
                target = self._retired[category]
                if target is None:
                    reason = f"category {category!r} is retired"
                    self.report.skip(reason, item=checked.prepared.item.item)
                    continue
                category = checked.submission.category = target
            category_id = await self._category(conn, category, checked.prepared.item)
            rows.append(self._row(checked, category_id))
        written = await bulk.write_batch(conn, rows)
        await bulk.after_batch(sender, written)
        for row in rows:
            self.report.done(photos=len(row.draft.images))

    def _prepare(self, item: Item) -> _Prepared:
        """Give each photo URL a part name, and point the body at it (`cid:anh-1`)."""
        data = dict(item.data)
        parts: dict[str, Photo] = {}
        by_url: dict[str, str] = {}

        def part_for(url: str, role: str, caption: str) -> str:
            if url not in by_url:
                by_url[url] = f"anh-{len(by_url) + 1}"
                parts[by_url[url]] = Photo(url, role, caption)
            return by_url[url]

        def inline(match: re.Match[str]) -> str:
            attrs = {
                m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
                for m in _ATTR.finditer(match.group(0))
            }
            url = urljoin(item.base_url, attrs.get("src", "").strip())
            if not url.startswith(("http://", "https://")):
                return ""
            part = part_for(url, "inline", item.captions.get(url, attrs.get("alt", "")))
            alt = html.escape(attrs.get("alt", ""))
            return f'<img src="cid:{part}" alt="{alt}">'

        data["body"] = _IMG.sub(inline, str(data.get("body") or ""))
        for photo in item.photos:
            url = urljoin(item.base_url, photo.url)
            if url.startswith(("http://", "https://")):
                part_for(url, photo.role, photo.caption)
        return _Prepared(item, data, parts)

    def _place_photos(self, one: _Prepared, fetched: dict[str, Stored | PhotoFailed]) -> None:
        """Keep the photos that came; the body forgets the others (and their figures)."""
        images: list[dict[str, str]] = []
        for part, photo in one.photos.items():
            got = fetched[photo.url]
            problem = None
            if isinstance(got, PhotoFailed):
                problem = str(got)
            elif len(images) >= self.settings.max_photos:
                problem = f"{photo.url}: over {self.settings.max_photos} photos per article"
            if problem is None:
                images.append({"part": part, "role": photo.role, "caption": photo.caption})
                continue
            one.problems.append(problem)
            self.report.fail(one.item.item, f"photo: {problem}", counted=False)
            one.data["body"] = drop_photo(one.data["body"], part)
        one.data["images"] = images

    async def _category(self, conn: Conn, slug: str, item: Item) -> int:
        """The category's id; created from the source's name for it when missing."""
        if slug not in self._categories:
            name = clean_text(item.category_name) or slug
            await conn.execute(
                "INSERT INTO categories (slug, name, position) VALUES (%s, %s,"
                " (SELECT coalesce(max(position), 0) + 1 FROM categories))"
                " ON CONFLICT (slug) DO NOTHING",
                (slug, name[:100]),
            )
            cur = await conn.execute("SELECT id FROM categories WHERE slug = %s", (slug,))
            row = await cur.fetchone()
            assert row is not None
            self._categories[slug] = row["id"]
        return self._categories[slug]

    def _row(self, checked: _Checked, category_id: int) -> bulk.BulkArticle:
        one, submission = checked.prepared, checked.submission
        images = []
        for image in submission.images:
            got = checked.photos[image["part"]]
            assert isinstance(got, Stored)
            images.append(
                ImageDraft(
                    part=image["part"],
                    caption=image["caption"],
                    role=image["role"],
                    sha256=got.sha256,
                    format=got.format,
                    bytes=got.bytes,
                    width=got.width,
                    height=got.height,
                )
            )
        status, draft = bulk.arriving(
            checking.draft(submission, category_id, images), datetime.now(UTC)
        )
        return bulk.BulkArticle(
            draft=draft,
            category_slug=submission.category,
            source=self.source,
            item=one.item.item,
            status=status,
            old_paths=one.item.old_paths,
            problems=tuple(one.problems),
        )


@functools.lru_cache(maxsize=1024)
def category_slug(nicename: str, name: str) -> tuple[str, str]:
    """A category's slug and name on bantin, from the old site's (a WordPress nicename may be
    percent-encoded Vietnamese); a slug the site keeps for itself gets a suffix. Remembered:
    every post of a category asks the same."""

    name = clean_text(name) or nicename
    slug = slugify(unquote(nicename)) or slugify(name)
    if not slug:
        return DEFAULT_CATEGORY
    checked, _ = checking.check_category({"slug": slug[:70], "name": name[:100]})
    if checked is None:
        slug = f"{slug[:60]}-cu"
    return slug[:80], name[:100]


def drop_photo(body: str, part: str) -> str:
    cid = re.escape(f'src="cid:{part}"')
    body = re.sub(rf"<figure\b[^>]*>(?:(?!</figure>).)*{cid}.*?</figure>", "", body, flags=re.S)
    return re.sub(rf"<img {cid}[^>]*>", "", body)
