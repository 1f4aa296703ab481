"""Handlers of the readers' site: pages from the cache, feeds as stored bytes, statistics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, cast

import jinja2
from aiohttp import web

from services.publisher import pages
from services.publisher.cache import PageCache
from services.publisher.labels import LABELS
from shared import articles, keys
from shared.models import Article
from shared.settings import Settings
from shared.text import search_text
from shared.web import pool_key, redis_key, settings_key

templates_key = web.AppKey("templates", jinja2.Environment)
cache_key = web.AppKey("cache", PageCache)

HTML = "text/html"
FEED_FORMATS = ("rss", "atom", "json")

Render = Callable[[], Awaitable[tuple[int, bytes]]]


async def home(request: web.Request) -> web.StreamResponse:
    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            categories = await articles.list_categories(conn)
            sections = []
            for category in categories:
                latest = await articles.latest_published(conn, category_id=category.id, limit=5)
                if latest:
                    sections.append(
                        {
                            "category": {"name": category.name, "url": category.path},
                            "cards": [pages.card(a, settings.zone) for a in latest],
                        }
                    )
        ctx = pages.base_context(settings, categories, title=settings.site_name, canonical="/")
        ctx.update(sections=sections, is_home=True)
        return 200, _render(request, "home.html", ctx)

    return await cached_page(request, render)


async def category_page(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["category"]
    page_no = _page_number(request)

    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            categories = await articles.list_categories(conn)
            category = next((c for c in categories if c.slug == slug), None)
            if category is None:
                return await error_page(request, 404, categories)
            found = await articles.latest_published(
                conn,
                category_id=category.id,
                limit=settings.page_size + 1,
                offset=(page_no - 1) * settings.page_size,
            )
        more = len(found) > settings.page_size
        ctx = pages.base_context(
            settings,
            categories,
            title=f"{category.name} - {settings.site_name}",
            canonical=category.path + (f"?page={page_no}" if page_no > 1 else ""),
            scope=category.slug,
            scope_name=category.name,
        )
        ctx.update(
            category={"name": category.name, "url": category.path},
            nav_current="page",
            cards=[pages.card(a, settings.zone) for a in found[: settings.page_size]],
            pagination={
                "page": page_no,
                "prev_url": _page_url(category.path, page_no - 1) if page_no > 1 else None,
                "next_url": _page_url(category.path, page_no + 1) if more else None,
            },
        )
        return 200, _render(request, "category.html", ctx)

    return await cached_page(request, render)


async def article_page(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    article_id = int(tail.rsplit("-", 1)[1])

    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            categories = await articles.list_categories(conn)
            try:
                article = await articles.get_article(conn, article_id)
            except articles.NotFound:
                return await error_page(request, 404, categories)
            if article.status == "unpublished":
                return await error_page(request, 410, categories)
            if article.status != "published":
                return await error_page(request, 404, categories)
            if request.path != article.path:
                return 301, article.path.encode()
            related = await related_articles(conn, article)
        ctx = pages.article_context(settings, categories, article, related)
        return 200, _render(request, "article.html", ctx)

    return await cached_page(request, render)


async def related_articles(conn: Any, article: Article, limit: int = 5) -> list[Article]:
    """Same category first, then by shared words (full text over the folded text), recent first
    among equals; never the article itself."""
    cur = await conn.execute(
        "SELECT a.id FROM articles a, to_tsvector('simple', %s) q"
        " WHERE a.status = 'published' AND a.id <> %s"
        " ORDER BY (a.category_id = %s) DESC,"
        " ts_rank(to_tsvector('simple', a.search_text),"
        "   to_tsquery('simple', array_to_string(tsvector_to_array(q), ' | '))) DESC,"
        " a.published_at DESC LIMIT %s",
        (search_text(article.title), article.id, article.category.id, limit),
    )
    ids = [row["id"] for row in await cur.fetchall()]
    return [await articles.get_article(conn, i) for i in ids]


async def search(request: web.Request) -> web.StreamResponse:
    settings = request.app[settings_key]
    q = request.query.get("q", "").strip()[:200]
    page_no = _page_number(request)
    folded = search_text(q)
    async with request.app[pool_key].connection() as conn:
        categories = await articles.list_categories(conn)
        results: list[Article] = []
        total = 0
        if folded:
            cur = await conn.execute(
                "SELECT a.id, count(*) OVER () AS total FROM articles a,"
                " plainto_tsquery('simple', %s) q WHERE a.status = 'published'"
                " AND to_tsvector('simple', a.search_text) @@ q"
                " ORDER BY ts_rank(to_tsvector('simple', a.search_text), q) DESC,"
                " a.published_at DESC LIMIT %s OFFSET %s",
                (folded, settings.page_size, (page_no - 1) * settings.page_size),
            )
            rows = await cur.fetchall()
            total = rows[0]["total"] if rows else 0
            results = [await articles.get_article(conn, row["id"]) for row in rows]
    ctx = pages.base_context(
        settings, categories, title=f"{LABELS['search']}: {q}", canonical="/search"
    )
    ctx["page"]["noindex"] = True
    more = page_no * settings.page_size < total
    ctx.update(
        q=q,
        total=total,
        results=[pages.card(a, settings.zone) for a in results],
        pagination={
            "page": page_no,
            "prev_url": f"/search?q={q}&page={page_no - 1}" if page_no > 1 else None,
            "next_url": f"/search?q={q}&page={page_no + 1}" if more else None,
        },
    )
    live = await request.app[cache_key].live()
    return _html(200, _with_stats(_render(request, "search.html", ctx), live))


async def feed(request: web.Request) -> web.StreamResponse:
    scope, fmt = request.match_info["scope"], request.match_info["fmt"]
    if fmt not in FEED_FORMATS:
        raise web.HTTPNotFound(text=f"Feeds come as {', '.join(FEED_FORMATS)}.")
    stored = cast(dict[bytes, bytes], await request.app[redis_key].hgetall(keys.feed(scope, fmt)))
    if not stored:
        async with request.app[pool_key].connection() as conn:
            known = scope == "all" or scope in {
                c.slug for c in await articles.list_categories(conn)
            }
        if not known:
            raise web.HTTPNotFound(text=f"There is no category {scope!r}.")
        # The feed is being built (first start, or Redis was emptied); the sweep rebuilds it.
        raise web.HTTPServiceUnavailable(
            text="This feed is being built; try again shortly.", headers={"Retry-After": "5"}
        )
    etag = stored[b"etag"].decode()
    last_modified = stored[b"last_modified"].decode()
    headers = {
        "ETag": etag,
        "Last-Modified": last_modified,
        "Cache-Control": "public, max-age=60",
        "Vary": "Accept-Encoding",
    }
    if _not_modified(request, etag, last_modified):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=stored[b"body"], headers=headers)
    response.headers["Content-Type"] = stored[b"content_type"].decode()
    response.enable_compression()
    return response


async def stats(request: web.Request) -> web.Response:
    live = await request.app[cache_key].live()
    return web.json_response(
        {"online": live.online, "total": live.total}, headers={"Cache-Control": "no-store"}
    )


async def cached_page(request: web.Request, render: Render) -> web.StreamResponse:
    cache = request.app[cache_key]
    live = await cache.live()
    key = request.path_qs
    body = await cache.get(live.version, key)
    if body is None:
        status, body = await render()
        if status == 301:
            raise web.HTTPMovedPermanently(location=body.decode())
        if status != 200:
            return _html(status, _with_stats(body, live))
        await cache.put(live.version, key, body)
    return _html(200, _with_stats(body, live))


async def error_page(
    request: web.Request, status: int, categories: Any = None
) -> tuple[int, bytes]:
    settings: Settings = request.app[settings_key]
    if categories is None:
        async with request.app[pool_key].connection() as conn:
            categories = await articles.list_categories(conn)
    title, message = {
        404: (LABELS["not_found_title"], LABELS["not_found_message"]),
        410: (LABELS["gone_title"], LABELS["gone_message"]),
    }.get(status, (LABELS["error_title"], ""))
    ctx = pages.base_context(
        settings, categories, title=f"{title} - {settings.site_name}", canonical=request.path
    )
    ctx["page"]["noindex"] = True
    ctx.update(status=status, title=title, message=message)
    return status, _render(request, "error.html", ctx)


async def html_error(request: web.Request, status: int) -> web.StreamResponse:
    """Readers who reach an unknown address get a page in Vietnamese, not JSON."""
    _, body = await error_page(request, status)
    live = await request.app[cache_key].live()
    return _html(status, _with_stats(body, live))


def _render(request: web.Request, template: str, ctx: dict[str, Any]) -> bytes:
    return request.app[templates_key].get_template(template).render(ctx).encode()


def _with_stats(body: bytes, live: Any) -> bytes:
    return body.replace(pages.ONLINE_MARK.encode(), str(live.online).encode()).replace(
        pages.TOTAL_MARK.encode(), str(live.total).encode()
    )


def _html(status: int, body: bytes) -> web.Response:
    return web.Response(
        status=status,
        body=body,
        content_type=HTML,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise web.HTTPBadRequest(text="page must be a whole number from 1 to 10000")
    return int(raw)


def _page_url(path: str, page_no: int) -> str:
    return path if page_no == 1 else f"{path}?page={page_no}"


def _not_modified(request: web.Request, etag: str, last_modified: str) -> bool:
    """RFC 9110 section 13.1: If-None-Match wins over If-Modified-Since when both are sent."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return etag in {t.strip() for t in inm.split(",")} or inm.strip() == "*"
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False
