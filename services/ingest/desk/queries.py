"""What the desk writes that the API does not: categories renamed and reordered."""

from __future__ import annotations

from shared.articles import Conn

PAGE = 50


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
