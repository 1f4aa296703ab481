"""Queries on categories and articles that ingest, the publisher and the workers all need.

Every function takes an open async connection; callers own transactions. The functions raise
domain errors (`NotFound`, `Conflict`); only views turn them into HTTP answers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, errors

from shared.models import Article, Category, Image, Rendition
from shared.text import search_text

Conn = AsyncConnection[Any]
log = logging.getLogger(__name__)


class NotFound(LookupError):
    """No such row (or not visible to the caller)."""


class Conflict(Exception):
    """The row exists already, or changed since the caller read it."""


@dataclass(frozen=True, slots=True)
class ImageDraft:
    part: str
    caption: str
    role: str
    sha256: str
    format: str
    bytes: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class ArticleDraft:
    """A validated, sanitized article as ingest accepts it."""

    slug: str
    category_id: int
    title: str
    summary: str
    body_source: str
    body_format: str
    body_html: str
    author: str
    unit: str
    published_at: datetime | None
    search_text: str
    gallery_title: str = ""
    tags: tuple[str, ...] = ()
    images: tuple[ImageDraft, ...] = field(default_factory=tuple)


# --- categories -------------------------------------------------------------------------------


# A category as the data layer gives it: its redirect named by the target's slug.
_CATEGORY = (
    "SELECT c.id, c.slug, c.name, c.retired_at, t.slug AS redirect_to"
    " FROM categories c LEFT JOIN categories t ON t.id = c.redirect_to"
)


class Refused(ValueError):
    """A change to a category that its rules refuse: `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InUse(Conflict):
    """A category that cannot be deleted: articles are in it, or retired ones send their
    readers to it."""

    def __init__(self, slug: str, articles: int, targeted_by: Sequence[str]) -> None:
        super().__init__(slug)
        self.articles = articles
        self.targeted_by = tuple(targeted_by)


async def list_categories(conn: Conn, *, retired: bool = False) -> list[Category]:
    """The categories in menu order; with `retired`, the retired ones too (after the others)."""
    where = "" if retired else " WHERE c.retired_at IS NULL"
    cur = await conn.execute(
        f"{_CATEGORY}{where} ORDER BY c.retired_at IS NOT NULL, c.position, c.id"
    )
    return [Category(**row) for row in await cur.fetchall()]


async def category_by_slug(conn: Conn, slug: str) -> Category:
    """The category, retired or not (`Category.refusal` says whether it takes articles)."""
    cur = await conn.execute(f"{_CATEGORY} WHERE c.slug = %s", (slug,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(slug)
    return Category(**row)


async def change_category(
    conn: Conn,
    slug: str,
    *,
    name: str | None = None,
    position: int | None = None,
    retired: bool | None = None,
    redirect_to: str | None = None,
) -> Category:
    """Rename, move in the menu (`position`, 1 first, among the categories in use), retire
    (with the slug of an active category its page and feeds send readers to, or none: they
    answer 410) or bring back. All or nothing, one admin at a time. Retired categories that
    sent their readers to this one follow it to its own target (or answer 410): no chains."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id, slug, position, retired_at FROM categories ORDER BY position, id FOR UPDATE"
        )
        rows = await cur.fetchall()
        found = next((r for r in rows if r["slug"] == slug), None)
        if found is None:
            raise NotFound(slug)
        target_id = None
        if redirect_to is not None:
            target = next((r for r in rows if r["slug"] == redirect_to), None)
            if target is None:
                raise Refused("redirect_to", f"unknown category {redirect_to!r}")
            if target["id"] == found["id"]:
                raise Refused("redirect_to", "must be another category than the retired one")
            if target["retired_at"] is not None:
                raise Refused("redirect_to", f"{redirect_to!r} is retired too; choose one in use")
            target_id = target["id"]
        if name is not None:
            await conn.execute("UPDATE categories SET name = %s WHERE id = %s", (name, found["id"]))
        active = [r["id"] for r in rows if r["retired_at"] is None]
        if retired is True:
            await conn.execute(
                "UPDATE categories SET retired_at = coalesce(retired_at, now()), redirect_to = %s"
                " WHERE id = %s",
                (target_id, found["id"]),
            )
            await conn.execute(
                "UPDATE categories SET redirect_to = %s WHERE redirect_to = %s",
                (target_id, found["id"]),
            )
            active = [i for i in active if i != found["id"]]
        elif retired is False and found["retired_at"] is not None:
            await conn.execute(
                "UPDATE categories SET retired_at = NULL, redirect_to = NULL WHERE id = %s",
                (found["id"],),
            )
            active.append(found["id"])  # back at the end of the menu, unless placed
        if position is not None:
            if found["id"] not in active:
                raise Refused("position", "a retired category has no place in the menu")
            active.remove(found["id"])
            active.insert(min(position, len(active) + 1) - 1, found["id"])
        if position is not None or retired is False:
            # Renumbered whole: equal positions never make a move a no-op.
            await conn.execute(
                "UPDATE categories c SET position = o.n FROM unnest(%s::int[]) WITH ORDINALITY"
                " AS o(id, n) WHERE c.id = o.id",
                (active,),
            )
    return await category_by_slug(conn, slug)


async def delete_category(conn: Conn, slug: str) -> None:
    """Delete a category that nothing needs: never one with articles (retire it instead, or
    move them), never one that retired categories send their readers to."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT id FROM categories WHERE slug = %s FOR UPDATE", (slug,)
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(slug)
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM articles WHERE category_id = %(id)s) AS articles,"
                " (SELECT coalesce(array_agg(slug ORDER BY slug), '{}') FROM categories"
                "  WHERE redirect_to = %(id)s) AS targeted_by",
                {"id": row["id"]},
            )
            use = await cur.fetchone()
            assert use is not None
            if use["articles"] or use["targeted_by"]:
                raise InUse(slug, use["articles"], use["targeted_by"])
            await conn.execute("DELETE FROM categories WHERE id = %s", (row["id"],))
    except errors.ForeignKeyViolation as err:  # an article written meanwhile
        raise InUse(slug, 1, ()) from err


async def create_category(conn: Conn, slug: str, name: str) -> Category:
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO categories (slug, name, position)"
                " VALUES (%s, %s, (SELECT coalesce(max(position), 0) + 1 FROM categories))"
                " RETURNING id, slug, name",
                (slug, name),
            )
            row = await cur.fetchone()
    except errors.UniqueViolation as err:
        raise Conflict(slug) from err
    assert row is not None
    return Category(**row)


# --- articles ---------------------------------------------------------------------------------

# For queries elsewhere that return articles (the publisher's listings, related news, search):
# select ARTICLE_COLUMNS from ARTICLE_FROM, then pass the rows to with_images().
# A publication time Python cannot hold (a row written before ingest refused such dates) is
# read as NULL and flagged, so that one bad row never fails a page: with_images() skips it.
_READABLE = "a.published_at BETWEEN '0002-01-01 00:00+00' AND '9998-12-31 00:00+00'"
ARTICLE_COLUMNS = f"""
    a.id, a.uuid, a.slug, a.title, a.summary, a.body_html, a.body_format, a.author, a.unit,
    a.status, CASE WHEN {_READABLE} THEN a.published_at END AS published_at,
    a.published_at IS NOT NULL AND NOT ({_READABLE}) AS unreadable,
    a.created_at, a.updated_at, a.version, a.gallery_title, a.tags,
    a.submitted_by, a.error,
    c.id AS category_id, c.slug AS category_slug, c.name AS category_name
"""
ARTICLE_FROM = "articles a JOIN categories c ON c.id = a.category_id"


# Articles a multi-row INSERT carries: one statement per article spent a batch's time in round
# trips and per-statement work, and one for 500 long articles outlasted the 2 s dependency
# timeout (503).
INSERT_ROWS = 50

# The columns an article's text is written to, in one list for the insert and the update.
TEXT_COLUMNS = (
    "slug",
    "category_id",
    "title",
    "summary",
    "body_source",
    "body_format",
    "body_html",
    "author",
    "unit",
    "tags",
    "gallery_title",
    "published_at",
    "search_text",
)


def text_values(draft: ArticleDraft) -> list[Any]:
    return [list(draft.tags) if c == "tags" else getattr(draft, c) for c in TEXT_COLUMNS]


async def insert_article(conn: Conn, draft: ArticleDraft, submitted_by: int | None) -> int:
    """Insert the article and its photos (status `processing`); returns the new id."""
    (article_id,) = await insert_articles(conn, [draft], submitted_by)
    return article_id


async def insert_articles(
    conn: Conn, drafts: Sequence[ArticleDraft], submitted_by: int | None
) -> list[int]:
    """Insert articles and their photos (status `processing`), INSERT_ROWS articles a
    statement; returns the new ids in the drafts' order."""
    columns = ("uuid", *TEXT_COLUMNS, "submitted_by")
    row = f"({', '.join(['%s'] * len(columns))})"
    ids: list[int] = []
    async with conn.cursor() as cur:
        for start in range(0, len(drafts), INSERT_ROWS):
            rows = [
                (uuid.uuid4(), *text_values(draft), submitted_by)
                for draft in drafts[start : start + INSERT_ROWS]
            ]
            await cur.execute(
                f"INSERT INTO articles ({', '.join(columns)})"
                f" VALUES {', '.join([row] * len(rows))} RETURNING id, uuid",
                [value for one in rows for value in one],
            )
            by_uuid = {r["uuid"]: r["id"] for r in await cur.fetchall()}
            ids += [by_uuid[one[0]] for one in rows]
        images = [
            (
                article_id,
                position,
                i.part,
                i.caption,
                i.role,
                i.sha256,
                i.format,
                i.bytes,
                i.width,
                i.height,
            )
            for article_id, draft in zip(ids, drafts, strict=True)
            for position, i in enumerate(draft.images)
        ]
        if images:
            await cur.executemany(
                "INSERT INTO images (article_id, position, part, caption, role, sha256, format,"
                " bytes, width, height) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                images,
            )
    return ids


async def update_article(conn: Conn, article_id: int, version: int, draft: ArticleDraft) -> bool:
    """Replace the article's text fields if it is still at `version` (optimistic concurrency:
    two editors never overwrite each other silently). Photos are kept."""
    assignments = ", ".join(f"{c} = %s" for c in TEXT_COLUMNS)
    cur = await conn.execute(
        f"UPDATE articles SET {assignments}, updated_at = now(), version = version + 1"
        " WHERE id = %s AND version = %s",
        (*text_values(draft), article_id, version),
    )
    return cur.rowcount == 1


async def body_source(conn: Conn, article_id: int) -> str:
    cur = await conn.execute("SELECT body_source FROM articles WHERE id = %s", (article_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(article_id)
    source: str = row["body_source"]
    return source


async def get_article(conn: Conn, article_id: int) -> Article:
    """The article, even with a publication time that cannot be read (given as none): its
    owner can still see it, correct it or unpublish it."""
    cur = await conn.execute(
        f"SELECT {ARTICLE_COLUMNS} FROM {ARTICLE_FROM} WHERE a.id = %s", (article_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(article_id)
    found = await with_images(conn, [{**row, "unreadable": False}])
    if not found:
        raise NotFound(article_id)
    return found[0]


async def list_articles(
    conn: Conn,
    *,
    submitted_by: Sequence[int] | None = None,
    status: str | None = None,
    category: str | None = None,
    title: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Article]:
    """Newest first (by id), after the id `before` when given: a keyset page. `title` matches
    the titles' words without diacritics or tone habits (shared/text.py's search_text): the
    stored search text begins with the folded title, one character for each of the title's."""
    where, params = ["TRUE"], []
    for condition, value in (
        ("a.submitted_by = ANY(%s)", None if submitted_by is None else list(submitted_by)),
        ("a.status = %s", status),
        ("c.slug = %s", category),
        ("a.id < %s", before),
    ):
        if value is not None:
            where.append(condition)
            params.append(value)
    for word in search_text(title or "").split():
        where.append("left(a.search_text, char_length(a.title)) LIKE %s")
        params.append(
            "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
    cur = await conn.execute(
        f"SELECT {ARTICLE_COLUMNS} FROM {ARTICLE_FROM} WHERE {' AND '.join(where)}"
        " ORDER BY a.id DESC LIMIT %s",
        (*params, limit),
    )
    return await with_images(conn, await cur.fetchall())


async def latest_published(
    conn: Conn, *, category_id: int | None = None, limit: int = 20, offset: int = 0
) -> list[Article]:
    """Newest published first; served by a partial index, so the cost does not grow with the
    number of articles in the database."""
    where = "a.status = 'published'"
    params: list[Any] = []
    if category_id is not None:
        where += " AND a.category_id = %s"
        params.append(category_id)
    cur = await conn.execute(
        f"SELECT {ARTICLE_COLUMNS} FROM {ARTICLE_FROM} WHERE {where}"
        " ORDER BY a.published_at DESC, a.id DESC LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    return await with_images(conn, await cur.fetchall())


# --- publication ------------------------------------------------------------------------------

# An article dated less than this ahead is due now. Ingest, the workers and PostgreSQL each read
# their own clock (and a moment apart): an article dated "now" must be published by every one
# of them, never published by one and scheduled by another.
CLOCK_ALLOWANCE = timedelta(seconds=1)
# A scheduled article due within this window gets a task with its exact time (an ETA); a later
# one waits for beat's sweep to come that close.
ETA_WINDOW = timedelta(seconds=90)


def is_due(when: datetime | None, now: datetime | None = None) -> bool:
    """Whether an article dated `when` (None: no date, as soon as it can) is published now
    rather than scheduled for its date (see CLOCK_ALLOWANCE)."""
    return when is None or when <= (now or datetime.now(UTC)) + CLOCK_ALLOWANCE


async def mark(
    conn: Conn,
    article_id: int,
    status: str,
    *,
    published_at: datetime | None = None,
    error: str | None = None,
    expect: Sequence[str] = (),
) -> bool:
    """Move an article to `status`; with `expect`, only from one of those statuses.

    Returns whether a row changed, so that a task run twice does its work once.
    """
    sql = (
        "UPDATE articles SET status = %s, error = %s, updated_at = now(),"
        " published_at = coalesce(%s, published_at), version = version + 1"
        " WHERE id = %s"
    )
    params: list[Any] = [status, error, published_at, article_id]
    if expect:
        sql += " AND status = ANY(%s)"
        params.append(list(expect))
    cur = await conn.execute(sql, params)
    return cur.rowcount == 1


async def with_images(conn: Conn, rows: Sequence[dict[str, Any]]) -> list[Article]:
    """The rows (selected as ARTICLE_COLUMNS) as articles with their photos. A row that cannot
    be made into an article is logged and left out: one bad row never fails a page."""
    rows = [row for row in rows if _readable(row)]
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    cur = await conn.execute(
        "SELECT i.id, i.article_id, i.position, i.part, i.caption, i.role, i.width, i.height,"
        " i.error, i.placeholder,"
        " coalesce(json_agg(json_build_array(r.path, r.width, r.height, r.format, r.bytes)"
        "   ORDER BY r.format, r.width) FILTER (WHERE r.path IS NOT NULL), '[]') AS renditions"
        " FROM images i LEFT JOIN renditions r ON r.image_id = i.id"
        " WHERE i.article_id = ANY(%s) GROUP BY i.id ORDER BY i.article_id, i.position",
        (ids,),
    )
    images: dict[int, list[Image]] = {}
    for r in await cur.fetchall():
        images.setdefault(r["article_id"], []).append(
            Image(
                id=r["id"],
                position=r["position"],
                part=r["part"],
                caption=r["caption"],
                role=r["role"],
                width=r["width"],
                height=r["height"],
                error=r["error"],
                placeholder=r["placeholder"],
                renditions=tuple(Rendition(*item) for item in r["renditions"]),
            )
        )
    found = []
    for row in rows:
        try:
            found.append(_article(row, tuple(images.get(row["id"], ()))))
        except (KeyError, TypeError, ValueError) as err:
            log.error("article %s cannot be read and is left out: %r", row.get("id"), err)
    return found


def _readable(row: dict[str, Any]) -> bool:
    if row.get("unreadable"):
        log.error("article %s has a publication time out of range and is left out", row["id"])
        return False
    return True


def _article(row: dict[str, Any], images: tuple[Image, ...]) -> Article:
    return Article(
        id=row["id"],
        uuid=row["uuid"],
        slug=row["slug"],
        category=Category(row["category_id"], row["category_slug"], row["category_name"]),
        title=row["title"],
        summary=row["summary"],
        body_html=row["body_html"],
        body_format=row["body_format"],
        author=row["author"],
        unit=row["unit"],
        status=row["status"],
        published_at=row["published_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        gallery_title=row["gallery_title"],
        tags=tuple(row["tags"]),
        images=images,
        submitted_by=row["submitted_by"],
        error=row["error"],
    )
