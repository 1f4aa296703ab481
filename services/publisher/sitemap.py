"""For search engines: /robots.txt and the sitemaps (https://www.sitemaps.org/protocol.html).

Up to 50,000 addresses, /sitemap.xml is one sitemap (home, categories, then every published
article, newest first). Beyond, it is a sitemap index: /sitemap-0.xml lists the home page and
the categories, and /sitemap-K.xml the published articles whose ids are in the K-th range of
50,000, so an article never moves from one sitemap to another. Sitemaps are streamed in
batches (bounded memory, no database connection held while a crawler reads), compressed when
the crawler accepts it, and carry an ETag (the site version) for conditional requests. One
that fails part-way ends its connection rather than end a 200 that lists only part.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from aiohttp import web

from services.publisher import queries
from services.publisher.views import cache_key
from shared import articles
from shared.prepared import not_modified
from shared.web import pool_key, settings_key

log = logging.getLogger(__name__)

MAX_URLS = 50_000  # per sitemap, and the articles per id range of a sitemap index
XML = "application/xml"
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
HEAD = f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">\n'.encode()
TAIL = b"</urlset>\n"


async def robots(request: web.Request) -> web.Response:
    site = request.app[settings_key].site_url()
    body = f"User-agent: *\nDisallow: /search\nDisallow: /api/\n\nSitemap: {site}/sitemap.xml\n"
    return web.Response(
        text=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def sitemap(request: web.Request) -> web.StreamResponse:
    etag = await _etag(request, "index")
    if not_modified(request, etag):
        return web.Response(status=304, headers=_headers(etag))
    site = request.app[settings_key].site_url()
    async with request.app[pool_key].connection() as conn:
        categories = await articles.list_categories(conn)
        room = max(0, MAX_URLS - 1 - len(categories))
        parts = None
        if await queries.more_published_than(conn, room):
            parts = await queries.sitemap_parts(conn, MAX_URLS)
    if parts is None:
        sections = [site + "/"] + [site + c.path for c in categories]
        return await _stream(
            request, etag, sections, queries.sitemap_entries(request.app[pool_key])
        )
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<sitemapindex xmlns="{NS}">',
        f"<sitemap><loc>{escape(site)}/sitemap-0.xml</loc></sitemap>",
        *(
            f"<sitemap><loc>{escape(site)}/sitemap-{part}.xml</loc>"
            f"<lastmod>{_w3c(lastmod)}</lastmod></sitemap>"
            for part, lastmod in parts
        ),
        "</sitemapindex>",
        "",
    ]
    response = web.Response(body="\n".join(lines).encode(), headers=_headers(etag))
    response.enable_compression()
    return response


async def sitemap_part(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["part"]
    if len(raw) > 9 or (raw.startswith("0") and raw != "0"):
        raise web.HTTPNotFound()
    part = int(raw)
    etag = await _etag(request, raw)
    if not_modified(request, etag):
        return web.Response(status=304, headers=_headers(etag))
    site = request.app[settings_key].site_url()
    if part == 0:
        async with request.app[pool_key].connection() as conn:
            categories = await articles.list_categories(conn)
        return await _stream(request, etag, [site + "/"] + [site + c.path for c in categories])
    id_range = ((part - 1) * MAX_URLS, part * MAX_URLS)
    batches = queries.sitemap_entries(request.app[pool_key], id_range=id_range)
    first = await anext(batches, None)
    if first is None:  # no published article in this range (any more)
        raise web.HTTPNotFound()
    return await _stream(request, etag, [], _chain(first, batches))


async def _chain(
    first: list[queries.SitemapEntry], rest: AsyncIterator[list[queries.SitemapEntry]]
) -> AsyncIterator[list[queries.SitemapEntry]]:
    yield first
    async for batch in rest:
        yield batch


async def _stream(
    request: web.Request,
    etag: str,
    sections: list[str],
    batches: AsyncIterator[list[queries.SitemapEntry]] | None = None,
) -> web.StreamResponse:
    """Write a <urlset>: the `sections` (home, categories), then the articles batch by batch."""
    site = request.app[settings_key].site_url()
    response = web.StreamResponse(headers=_headers(etag))
    response.enable_compression()
    await response.prepare(request)
    if request.method != "HEAD":
        await response.write(HEAD + "".join(_url(loc) for loc in sections).encode())
        if batches is not None:
            try:
                async for batch in batches:
                    await response.write(_urls(site, batch))
            except Exception:
                # The 200 and part of the list are sent: no error answer can follow. End the
                # connection before the last chunk, so the crawler sees a broken download
                # (and retries), never a short list it would take for the whole.
                log.exception("the sitemap failed part-way; connection closed")
                if request.transport is not None:
                    request.transport.abort()
                return response
        await response.write(TAIL)
    await response.write_eof()
    return response


def _urls(site: str, batch: list[queries.SitemapEntry]) -> bytes:
    return "".join(_url(site + e.path, e.lastmod) for e in batch).encode()


def _url(loc: str, lastmod: datetime | None = None) -> str:
    if lastmod is None:
        return f"<url><loc>{escape(loc)}</loc></url>\n"
    return f"<url><loc>{escape(loc)}</loc><lastmod>{_w3c(lastmod)}</lastmod></url>\n"


def _w3c(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _etag(request: web.Request, name: str) -> str:
    live = await request.app[cache_key].live()
    return f'W/"sitemap-{name}-{live.version}"'


def _headers(etag: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "Cache-Control": "public, max-age=300",
        "Content-Type": f"{XML}; charset=utf-8",
    }
