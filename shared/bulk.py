"""The bulk write path: many checked articles in one transaction, for imports, restores and
the API's batch submissions (POST /api/v1/articles/batch).

Ingest writes one article per transaction (a submitter waits for its answer); an import of an
old portal's archive would spend its time in round trips and commits that way. Here a batch of
articles goes in with PostgreSQL's COPY (articles, their photos) and one statement per other
table, all in one transaction, together with the import's record of what it brought in: a
batch is either wholly written or not at all, and an interrupted import, run again, skips
the items of every batch that was committed (the importer writes two at once).

After an import's commit, the work that follows is sent in bulk (`after_batch`):
`process_article` for each article whose photos must be rendered before it publishes (the
workers' usual path), `render_image` for photos of articles that keep their status (a restored
unpublished one), and one `site_changed` for the whole batch, so caches and feeds go stale once
per batch, not once per article. The API's batches (services/ingest/submit.py) take the same
path and the same `after_batch`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from psycopg import AsyncCopy

from shared.articles import ETA_WINDOW, TEXT_COLUMNS, ArticleDraft, Conn, is_due, text_values
from shared.history import Past
from shared.history import restore as restore_history
from shared.tasks import PROCESS_ARTICLE, PUBLISH_ARTICLE, RENDER_IMAGE, SITE_CHANGED, TaskSender

log = logging.getLogger(__name__)

# The namespace of the uuids given to imported articles: uuid5(IMPORTED, "source\0item") is the
# same on every run, so even two imports racing each other cannot bring an item in twice.
IMPORTED = uuid.UUID("5d1f3c2e-6b8a-4c57-9a0e-62616e74696e")

# Each article's text columns are the ones ingest writes (shared/articles.py), with the state
# an import brings along.
_ARTICLE_COLUMNS = (
    "id",
    "uuid",
    *TEXT_COLUMNS,
    "status",
    "error",
    "submitted_by",
    "created_at",
    "updated_at",
    "version",
)
_IMAGE_COLUMNS = (
    "article_id",
    "position",
    "part",
    "caption",
    "role",
    "sha256",
    "format",
    "bytes",
    "width",
    "height",
)


def arriving(draft: ArticleDraft, now: datetime) -> tuple[str, ArticleDraft]:
    """The status a checked article enters with by this path, and its draft dated: with
    photos `processing` (the workers render them, then publish it), dated ahead `scheduled`
    (beat's sweep publishes it when it is due), else `published` at once (dated now when it
    came without a date). Pages and feeds learn of it from `after_batch`'s one site_changed,
    or, were that message lost, from the sweep (workers/feeds.py refresh_stale)."""
    when = draft.published_at or now
    if draft.images:
        status = "processing"
    elif not is_due(when, now):
        status = "scheduled"
    else:
        status = "published"
    # replace() costs more than the rest of an imported article's row: only when it changes.
    return status, draft if draft.published_at is not None else replace(draft, published_at=when)


def item_uuid(source: str, item: str) -> uuid.UUID:
    return uuid.uuid5(IMPORTED, f"{source}\0{item}")


@dataclass(slots=True)
class BulkArticle:
    """One checked, sanitized article and what the import knows about it."""

    draft: ArticleDraft
    category_slug: str
    source: str = ""  # where an import found it ("" for the API's batches: nothing recorded)
    item: str = ""
    status: str = "published"  # published, scheduled, processing (for the workers), ...
    uuid: uuid.UUID | None = None  # default: item_uuid(source, item), or a random one
    id: int | None = None  # kept when free (a restore keeps its links), else a new one
    old_paths: tuple[str, ...] = ()  # answered with 301 to the article
    problems: tuple[str, ...] = ()  # what could not come along (a photo that answered 404)
    error: str | None = None
    submitted_by: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    views: int = 0
    history: tuple[Past, ...] = ()  # a restored article's events, oldest first

    @property
    def path(self) -> str:
        assert self.id is not None
        return f"/{self.category_slug}/{self.draft.slug}-{self.id}"


@dataclass(slots=True)
class Written:
    """What a committed batch leaves to do, for `after_batch`."""

    articles: list[BulkArticle] = field(default_factory=list)
    images_to_render: list[int] = field(default_factory=list)


async def imported_items(conn: Conn, source: str, items: Sequence[str]) -> set[str]:
    """Which of these items a run of this source has already brought in."""
    cur = await conn.execute(
        "SELECT item FROM import_items WHERE source = %s AND item = ANY(%s)", (source, list(items))
    )
    return {row["item"] for row in await cur.fetchall()}


async def write_batch(conn: Conn, batch: Sequence[BulkArticle]) -> Written:
    """Write the batch in one transaction; each article gets its id (`BulkArticle.id`)."""
    written = Written(list(batch))
    if not batch:
        return written
    async with conn.transaction():
        # The database's clock at the transaction's start (now()), as for any other write:
        # beat's sweep compares article changes with when the feeds read them by this clock.
        cur = await conn.execute("SELECT now() AS now")
        row = await cur.fetchone()
        assert row is not None
        now = row["now"]
        await _assign_ids(conn, batch)
        async with _copy(conn, "articles", _ARTICLE_COLUMNS) as copy:
            for a in batch:
                await copy.write_row(
                    (
                        a.id,
                        a.uuid or (item_uuid(a.source, a.item) if a.source else uuid.uuid4()),
                        *text_values(a.draft),
                        a.status,
                        a.error,
                        a.submitted_by,
                        a.created_at or now,
                        a.updated_at or a.created_at or now,
                        a.version,
                    )
                )
        with_images = [a for a in batch if a.draft.images]
        if with_images:
            async with _copy(conn, "images", _IMAGE_COLUMNS) as copy:
                for a in with_images:
                    for position, image in enumerate(a.draft.images):
                        await copy.write_row(
                            (
                                a.id,
                                position,
                                image.part,
                                image.caption,
                                image.role,
                                image.sha256,
                                image.format,
                                image.bytes,
                                image.width,
                                image.height,
                            )
                        )
            keep_status = [a.id for a in with_images if a.status != "processing"]
            if keep_status:
                cur = await conn.execute(
                    "SELECT id FROM images WHERE article_id = ANY(%s) ORDER BY id", (keep_status,)
                )
                written.images_to_render = [row["id"] for row in await cur.fetchall()]
        imported = [a for a in batch if a.source]
        if imported:
            await conn.execute(
                "INSERT INTO import_items (source, item, article_id, problems)"
                " SELECT s, i, a, CASE WHEN p = '' THEN '{}'::text[]"
                " ELSE string_to_array(p, E'\\n') END"
                " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) AS t(s, i, a, p)"
                # An item whose article was deleted since, and is restored now.
                " ON CONFLICT (source, item) DO UPDATE SET article_id = EXCLUDED.article_id,"
                " problems = EXCLUDED.problems, imported_at = now()",
                (
                    [a.source for a in imported],
                    [a.item for a in imported],
                    [a.id for a in imported],
                    ["\n".join(p.replace("\n", " ") for p in a.problems) for a in imported],
                ),
            )
        old = sorted({(path, a.id) for a in batch for path in a.old_paths if path != a.path})
        if old:
            # A path already taken (loaded from a CSV, or two posts sharing a guid) keeps its
            # first target. In order: two batches written at once that share a path then wait
            # for each other instead of deadlocking.
            await conn.execute(
                "INSERT INTO redirects (old_path, article_id)"
                " SELECT * FROM unnest(%s::text[], %s::bigint[]) ON CONFLICT DO NOTHING",
                ([p for p, _ in old], [i for _, i in old]),
            )
        await restore_history(conn, [(a.id, e) for a in batch for e in a.history if a.id])
        viewed = [a for a in batch if a.views]
        if viewed:
            await conn.execute(
                "INSERT INTO article_views (article_id, views)"
                " SELECT * FROM unnest(%s::bigint[], %s::bigint[])",
                ([a.id for a in viewed], [a.views for a in viewed]),
            )
    return written


@contextlib.asynccontextmanager
async def _copy(conn: Conn, table: str, columns: Sequence[str]) -> AsyncIterator[AsyncCopy]:
    """COPY into these columns in PostgreSQL's binary format: each value goes as its bytes,
    where the text format had psycopg escape every character of every body in Python (and
    PostgreSQL unescape it), the import's largest cost after checking. The binary format needs
    each column's type, asked of the database once (never a second copy of the schema here)."""
    if table not in _COLUMN_TYPES:
        cur = await conn.execute(
            "SELECT attname, atttypid::int AS oid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        _COLUMN_TYPES[table] = {row["attname"]: row["oid"] for row in await cur.fetchall()}
    types = _COLUMN_TYPES[table]
    async with conn.cursor().copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types([types[c] for c in columns])
        yield copy


_COLUMN_TYPES: dict[str, dict[str, int]] = {}  # table -> column -> type oid (built-in types)


async def _assign_ids(conn: Conn, batch: Sequence[BulkArticle]) -> None:
    wanted = [a.id for a in batch if a.id is not None]
    if wanted:
        cur = await conn.execute("SELECT id FROM articles WHERE id = ANY(%s)", (wanted,))
        taken = {row["id"] for row in await cur.fetchall()}
        seen: set[int] = set()
        for a in batch:
            if a.id is not None and (a.id in taken or a.id in seen):
                a.id = None
            elif a.id is not None:
                seen.add(a.id)
    fresh = [a for a in batch if a.id is None]
    if fresh:
        cur = await conn.execute(
            "SELECT nextval('articles_id_seq') AS id FROM generate_series(1, %s)", (len(fresh),)
        )
        for a, row in zip(fresh, await cur.fetchall(), strict=True):
            a.id = row["id"]
    if wanted:
        # Ids kept from elsewhere: the sequence moves past them, so new articles never collide.
        await conn.execute(
            "SELECT setval('articles_id_seq', greatest((SELECT max(id) FROM articles), %s,"
            " (SELECT last_value FROM articles_id_seq)))",
            (max(a.id for a in batch if a.id is not None),),
        )


async def after_batch(sender: TaskSender, written: Written) -> None:
    """What follows a committed batch: photos to render, articles to publish once they are,
    and pages and feeds gone stale, once for the whole batch. A send that fails means the
    broker is away: what is left is not tried (each would wait as long). Beat's sweep sends
    again the articles the database shows processing or due; the sends it cannot recover go
    first (a restore's photos of articles that keep their status; the stale check misses the
    restored rows, which keep their old change times)."""
    # Dated a little ahead: the worker gives it a task for its exact time at once, rather than
    # when beat's sweep next comes by (every 30 s).
    soon = datetime.now(UTC) + ETA_WINDOW
    scopes = sorted({a.category_slug for a in written.articles if a.status == "published"})
    work = (
        (RENDER_IMAGE, [[i] for i in written.images_to_render]),
        # The worker bumps the site's version (every cached page stale at once) and marks the
        # feeds of these scopes dirty; the articles that publish later do that themselves.
        (SITE_CHANGED, [[scopes]] if scopes else []),
        (PROCESS_ARTICLE, [[a.id] for a in written.articles if a.status == "processing"]),
        (
            PUBLISH_ARTICLE,
            [
                [a.id]
                for a in written.articles
                if a.status == "scheduled" and a.draft.published_at and a.draft.published_at <= soon
            ],
        ),
    )
    for name, calls in work:
        if calls and await sender.send_many(name, calls) < len(calls):
            break
