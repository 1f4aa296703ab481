"""What the desk reads that the API does not say."""

from __future__ import annotations

from shared.articles import Conn

PAGE = 50


async def category_counts(conn: Conn) -> dict[int, int]:
    """How many articles each category holds (any status): an empty one may be deleted."""
    cur = await conn.execute("SELECT category_id, count(*) AS n FROM articles GROUP BY category_id")
    return {row["category_id"]: row["n"] for row in await cur.fetchall()}
