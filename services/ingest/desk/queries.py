"""What the desk reads that the API does not: its list of articles, filtered for the reader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.articles import Conn
from shared.text import search_text
from shared.tokens import EDITORS, Token

PAGE = 50


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    title: str
    status: str
    category: str
    category_name: str
    path: str
    shown_at: datetime
    published_at: datetime | None


async def list_articles(
    conn: Conn,
    token: Token,
    *,
    status: str = "",
    category: str = "",
    q: str = "",
    before: int | None = None,
    limit: int = PAGE,
) -> list[Row]:
    """Newest first (by id, which the index on submitted_by serves for submitters); a submitter
    sees the articles of every token their account owns."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if token.role not in EDITORS:
        where.append(
            "(a.submitted_by = %s OR a.submitted_by IN"
            " (SELECT id FROM tokens WHERE account_id = %s))"
        )
        params += [token.id, token.account_id]
    if status:
        where.append("a.status = %s")
        params.append(status)
    if category:
        where.append("c.slug = %s")
        params.append(category)
    if q.strip():
        where.append("(a.title ILIKE %s OR strpos(a.search_text, %s) > 0)")
        params += ["%" + q.strip().replace("%", r"\%").replace("_", r"\_") + "%", search_text(q)]
    if before is not None:
        where.append("a.id < %s")
        params.append(before)
    cur = await conn.execute(
        "SELECT a.id, a.title, a.status, c.slug AS category, c.name AS category_name,"
        " '/' || c.slug || '/' || a.slug || '-' || a.id AS path,"
        " coalesce(a.published_at, a.created_at) AS shown_at, a.published_at"
        " FROM articles a JOIN categories c ON c.id = a.category_id"
        f" WHERE {' AND '.join(where)} ORDER BY a.id DESC LIMIT %s",
        (*params, limit),
    )
    return [Row(**row) for row in await cur.fetchall()]


async def rename_category(conn: Conn, slug: str, name: str) -> bool:
    cur = await conn.execute("UPDATE categories SET name = %s WHERE slug = %s", (name, slug))
    return cur.rowcount == 1


async def move_category(conn: Conn, slug: str, by: int) -> None:
    """Swap the category with its neighbour in the menu (by -1: earlier, +1: later); the
    positions are renumbered first, so that equal positions never make a swap a no-op."""
    async with conn.transaction():
        cur = await conn.execute("SELECT slug FROM categories ORDER BY position, id FOR UPDATE")
        order = [row["slug"] for row in await cur.fetchall()]
        if slug not in order:
            return
        at = order.index(slug)
        to = at + by
        if 0 <= to < len(order):
            order[at], order[to] = order[to], order[at]
        await conn.execute(
            "UPDATE categories c SET position = o.n FROM unnest(%s::text[]) WITH ORDINALITY"
            " AS o(slug, n) WHERE c.slug = o.slug",
            (order,),
        )
