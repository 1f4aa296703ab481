"""The readers' site's own queries: the home page's sections, related news, search, sitemaps.

Each page costs a fixed number of round trips whatever it lists: articles come with their
photos in one more query (never one per article), and every query is bounded (LIMIT, or a
candidate set of at most a few thousand rows for ranking).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The article columns and the photo loader of the shared data layer: the pages need the same
# Article records that `articles.latest_published` gives. (A public `articles.by_ids()` would
# be the tidy way; these two names are the only private ones used.)
from shared.articles import ARTICLE_COLUMNS, ARTICLE_FROM, Conn, with_images
from shared.db import AsyncPool
from shared.models import Article

# Related news looks for shared words among this many of the most recent articles of each group
# (same category, others): the work is bounded whatever the size of the site, and news a reader
# calls related is recent news anyway.
RELATED_CANDIDATES = 300
# ... ranked by the title's words, then this many times the list's length by words and pairs.
RELATED_SHORTLIST = 4
# Search ranks at most this many matches, the most recent (50 pages of 20).
SEARCH_CANDIDATES = 1000


async def home_sections(conn: Conn, per_category: int) -> list[Article]:
    """The latest `per_category` published articles of every category in use, in navigation order:
    one query (a LATERAL join, each branch served by the category's partial index)."""
    cur = await conn.execute(
        f"SELECT {ARTICLE_COLUMNS} FROM categories c CROSS JOIN LATERAL ("
        "  SELECT * FROM articles x WHERE x.category_id = c.id AND x.status = 'published'"
        "  ORDER BY x.published_at DESC, x.id DESC LIMIT %s) a"
        " WHERE c.retired_at IS NULL ORDER BY c.position, c.id, a.published_at DESC, a.id DESC",
        (per_category,),
    )
    return await with_images(conn, await cur.fetchall())


async def related(conn: Conn, article: Article, tsquery: str | None, limit: int) -> list[Article]:
    """Same category first; within each group by textual similarity to the article's title
    (`tsquery`, see pages.related_tsquery), recent first among equals; never the article.
    Articles that share no word still fill the list (same category first, newest first).

    Ranked in two steps: every candidate by the title's words alone, then the best few by the
    words and their pairs. ts_rank with the pairs costs twice as much a candidate as with the
    words (a pair holds only where both words do, so the words find the same candidates)."""
    words = " | ".join(t for t in (tsquery or "").split(" | ") if t and "<->" not in t)
    cur = await conn.execute(
        "WITH q AS (SELECT"
        "  CASE WHEN %(q)s <> '' THEN to_tsquery('simple', %(q)s) END AS q,"
        "  CASE WHEN %(w)s <> '' THEN to_tsquery('simple', %(w)s) END AS w),"
        " candidates AS ("
        # ts_rank, not ts_rank_cd: with the title's word pairs in the query, cover density cost
        # 70 us a candidate (60 ms a page) where ts_rank costs 2 us, for the same order here.
        # Only the most recent articles of each group are candidates: walking the date index
        # for them costs the same on any site, where letting the full-text index find every
        # article that shares a word (three in four, on a big site) cost 600 ms at 10^5.
        "  (SELECT r.id, r.published_at, true AS same, r.search_vector FROM ("
        "    SELECT a.id, a.published_at, a.search_vector FROM articles a"
        "    WHERE a.status = 'published' AND a.category_id = %(cat)s AND a.id <> %(id)s"
        "    ORDER BY a.published_at DESC, a.id DESC LIMIT %(n)s) r, q"
        "   WHERE r.search_vector @@ q.w)"
        "  UNION ALL"
        "  (SELECT r.id, r.published_at, false, r.search_vector FROM ("
        "    SELECT a.id, a.published_at, a.category_id, a.search_vector FROM articles a"
        "    WHERE a.status = 'published'"
        "    ORDER BY a.published_at DESC, a.id DESC LIMIT %(n)s) r, q"
        "   WHERE r.category_id <> %(cat)s AND r.search_vector @@ q.w)"
        "  UNION ALL"
        "  (SELECT a.id, a.published_at, true, NULL FROM articles a"
        "   WHERE a.status = 'published' AND a.category_id = %(cat)s AND a.id <> %(id)s"
        "   ORDER BY a.published_at DESC, a.id DESC LIMIT %(limit)s)"
        " ),"
        " by_words AS ("
        "  SELECT DISTINCT ON (c.id) c.id, c.same, c.published_at, c.search_vector,"
        "   coalesce(ts_rank(c.search_vector, q.w), 0) AS score"
        "  FROM candidates c, q ORDER BY c.id, score DESC"
        " ),"
        " shortlist AS ("
        "  SELECT * FROM by_words"
        "  ORDER BY same DESC, score DESC, published_at DESC, id DESC LIMIT %(short)s"
        " ),"
        # The few chosen before the join: joining every candidate to its whole article row and
        # category first cost a third of the query.
        " top AS ("
        "  SELECT s.id, s.same, s.published_at,"
        "   coalesce(ts_rank(s.search_vector, q.q), 0) AS score"
        "  FROM shortlist s, q"
        "  ORDER BY s.same DESC, score DESC, s.published_at DESC, s.id DESC LIMIT %(limit)s"
        " )"
        f" SELECT {ARTICLE_COLUMNS}, r.same, r.score FROM top r"
        f" JOIN {ARTICLE_FROM} ON a.id = r.id"
        " ORDER BY r.same DESC, r.score DESC, a.published_at DESC, a.id DESC",
        {
            # An empty query (a title of stop words only) matches nothing: only the fill-up.
            "q": tsquery or "",
            "w": words,
            "cat": article.category.id,
            "id": article.id,
            "n": RELATED_CANDIDATES,
            "short": RELATED_SHORTLIST * limit,
            "limit": limit,
        },
    )
    return await with_images(conn, await cur.fetchall())


@dataclass(frozen=True, slots=True)
class Found:
    articles: list[Article]
    total: int  # at most SEARCH_CANDIDATES
    more: bool = False  # older matches exist beyond those


async def search(
    conn: Conn, folded: str, *, limit: int, offset: int, candidates: int | None = None
) -> Found:
    """Published articles whose folded text has every word of the folded query, best first,
    then newest. Only the `candidates` (default SEARCH_CANDIDATES) most recent matches are
    ranked and counted (`total` is at most that many; `more` says whether older ones exist),
    so a query of a word that half the site contains costs the same as any other. PostgreSQL
    finds them by walking the date index for common words, through the full-text index for
    rare ones."""
    if candidates is None:
        candidates = SEARCH_CANDIDATES
    cur = await conn.execute(
        "WITH q AS (SELECT plainto_tsquery('simple', %(q)s) AS q),"
        # One more than ranked, to know whether older matches exist.
        " matches AS ("
        "  SELECT a.id, a.published_at, a.search_vector,"
        "   row_number() OVER (ORDER BY a.published_at DESC, a.id DESC) AS n"
        "  FROM articles a, q"
        "  WHERE a.status = 'published' AND a.search_vector @@ q.q"
        "  ORDER BY a.published_at DESC, a.id DESC LIMIT %(n)s + 1"
        " ),"
        " ranked AS ("
        "  SELECT m.id, ts_rank(m.search_vector, q.q) AS score FROM matches m, q"
        "  WHERE m.n <= %(n)s"
        "  ORDER BY score DESC, m.published_at DESC, m.id DESC LIMIT %(limit)s OFFSET %(offset)s"
        " )"
        f" SELECT {ARTICLE_COLUMNS}, (SELECT count(*) FROM matches) AS found"
        f" FROM ranked r JOIN {ARTICLE_FROM} ON a.id = r.id"
        " ORDER BY r.score DESC, a.published_at DESC, a.id DESC",
        {"q": folded, "n": candidates, "limit": limit, "offset": offset},
    )
    rows = await cur.fetchall()
    if rows:
        found = int(rows[0]["found"])
    else:
        # Past the last page (or nothing at all): say how many there are.
        cur = await conn.execute(
            "SELECT count(*) AS found FROM ("
            "  SELECT 1 FROM articles a, plainto_tsquery('simple', %s) q"
            "  WHERE a.status = 'published' AND a.search_vector @@ q LIMIT %s) m",
            (folded, candidates + 1),
        )
        row = await cur.fetchone()
        found = int(row["found"]) if row else 0
    return Found(await with_images(conn, rows), min(found, candidates), found > candidates)


# --- sitemaps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    path: str
    lastmod: datetime


async def more_published_than(conn: Conn, n: int) -> bool:
    """Whether more than `n` articles are published (reads at most n + 1 index entries)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM articles WHERE status = 'published'"
        " ORDER BY published_at DESC, id DESC OFFSET %s) AS more",
        (n,),
    )
    row = await cur.fetchone()
    return bool(row and row["more"])


async def sitemap_parts(conn: Conn, part_size: int) -> list[tuple[int, datetime]]:
    """(part, last modification) of every id range of `part_size` that has published
    articles: part k holds the ids ((k-1)*part_size, k*part_size], so an article stays in its
    sitemap for ever and each sitemap changes only when its own articles do."""
    cur = await conn.execute(
        "SELECT (id - 1) / %s + 1 AS part, max(updated_at) AS lastmod FROM articles"
        " WHERE status = 'published' GROUP BY 1 ORDER BY 1",
        (part_size,),
    )
    return [(int(row["part"]), row["lastmod"]) for row in await cur.fetchall()]


async def sitemap_entries(
    pool: AsyncPool, *, id_range: tuple[int, int] | None = None, batch: int = 5000
) -> AsyncIterator[list[SitemapEntry]]:
    """Published articles in batches, all of them newest first, or those of one id range in
    id order. Keyset pagination, one short query per batch: a slow crawler never holds a
    database connection while it reads, and memory stays bounded by `batch`."""
    after: tuple[Any, ...] | None = None
    while True:
        if id_range is None:
            where = "a.status = 'published'"
            params: list[Any] = []
            if after is not None:
                where += " AND (a.published_at, a.id) < (%s, %s)"
                params = list(after)
            order = "a.published_at DESC, a.id DESC"
        else:
            where = "a.status = 'published' AND a.id > %s AND a.id <= %s"
            params = [after[0] if after else id_range[0], id_range[1]]
            order = "a.id"
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT a.id, a.slug, c.slug AS category, a.updated_at, a.published_at"
                f" FROM articles a JOIN categories c ON c.id = a.category_id"
                f" WHERE {where} ORDER BY {order} LIMIT %s",
                (*params, batch),
            )
            rows = await cur.fetchall()
        if not rows:
            return
        yield [
            SitemapEntry(f"/{r['category']}/{r['slug']}-{r['id']}", r["updated_at"]) for r in rows
        ]
        if len(rows) < batch:
            return
        last = rows[-1]
        after = (last["id"],) if id_range is not None else (last["published_at"], last["id"])
