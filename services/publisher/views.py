"""Handlers of the readers' site: pages from the cache, feeds as stored bytes, statistics.

A page is rendered once per site version and kept in the page cache (Redis, with an in-process
layer in front); each answer substitutes the live statistics into the cached bytes. The ETag
names the site version, the page and those statistics, so a reader's browser revalidates with
one Redis round trip and gets a 304 while nothing it shows has changed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import hdrs, web

from services.publisher import front, pages, queries
from services.publisher.cache import Live, PageCache, Ready
from services.publisher.labels import LABELS
from shared import articles, site
from shared.counting.record import Recorder, hits_key, record, statistics_key
from shared.models import Article
from shared.prepared import PreparedResponse, accepted_encoding, compressed, not_modified
from shared.settings import Settings
from shared.text import clean_text, nfc, search_text
from shared.web import DEPENDENCY_ERRORS, pool_key, settings_key

templates_key = web.AppKey("templates", jinja2.Environment)
cache_key = web.AppKey("cache", PageCache)

HTML = "text/html"
HOME_PER_CATEGORY = 5
RELATED = 5
MAX_ID = 2**63 - 1
MAX_QUERY = 200  # characters of a search query
MAX_PAGE = 10_000  # pages of a listing or a search

Render = Callable[[], Awaitable[tuple[int, bytes]]]


async def home(request: web.Request) -> web.StreamResponse:
    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            chrome = await site.chrome(conn)
            latest = await queries.home_sections(conn, HOME_PER_CATEGORY)
        by_category: dict[int, list[Article]] = {}
        for article in latest:
            by_category.setdefault(article.category.id, []).append(article)
        sections = [
            {
                "category": {"name": c.name, "url": c.path},
                "cards": [pages.card(a, settings.zone) for a in by_category[c.id]],
            }
            for c in chrome.categories
            if c.id in by_category
        ]
        ctx = pages.base_context(
            settings,
            chrome,
            title=settings.site_name,
            canonical="/",
        )
        ctx.update(sections=sections, is_home=True)
        return 200, _render(request, "home.html", ctx)

    return await serve_page(request, render, key="/")


async def category_page(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["category"]
    page_no = page_number(request)
    path = f"/{slug}/"

    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            chrome = await site.chrome(conn)
            if slug in chrome.retired:
                to = chrome.retired[slug]
                return await retired(request, chrome, f"/{to}/" if to else None)
            category = next((c for c in chrome.categories if c.slug == slug), None)
            if category is None:
                return await error_page(request, 404, chrome)
            found = await articles.latest_published(
                conn,
                category_id=category.id,
                limit=settings.page_size + 1,
                offset=(page_no - 1) * settings.page_size,
            )
        if page_no > 1 and not found:
            return await error_page(request, 404, chrome)  # past the last page
        more = len(found) > settings.page_size
        ctx = pages.base_context(
            settings,
            chrome,
            title=f"{category.name} - {settings.site_name}",
            canonical=_page_url(category.path, page_no),
            scope=category.slug,
            scope_name=category.name,
        )
        ctx.update(
            category={"name": category.name, "url": category.path},
            nav_current="page",
            cards=[pages.card(a, settings.zone) for a in found[: settings.page_size]],
            pagination=_pagination(page_no, more, partial(_page_url, category.path)),
        )
        return 200, _render(request, "category.html", ctx)

    return await serve_page(request, render, key=_page_url(path, page_no))


async def article_page(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    article_id = int(tail.rsplit("-", 1)[1])

    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        async with request.app[pool_key].connection() as conn:
            chrome = await site.chrome(conn)
            try:
                if article_id > MAX_ID:
                    raise articles.NotFound(article_id)
                article = await articles.get_article(conn, article_id)
            except articles.NotFound:
                return await error_page(request, 404, chrome)
            if article.status == "unpublished":
                return await error_page(request, 410, chrome)
            if article.status != "published":
                return await error_page(request, 404, chrome)
            if request.path != article.path:
                return 301, article.path.encode()
            related = await queries.related(
                conn, article, pages.related_tsquery(article.title), RELATED
            )
        # Photos in the body get the templates' own <picture> macro: one markup for all.
        macros = request.app[templates_key].get_template("_macros.html").module
        ctx = pages.article_context(
            settings,
            chrome,
            article,
            related,
            picture=macros.picture,  # type: ignore[attr-defined]
        )
        return 200, _render(request, "article.html", ctx)

    return await serve_page(request, render, key=request.path, article_id=article_id)


async def search(request: web.Request) -> web.StreamResponse:
    """Matches on the folded text (any tone-placement habit, with or without diacritics, NFC
    or NFD input); highlights on the original text. Not stored in the page cache (readers'
    queries are endless), but answered 304 while the site and the statistics are unchanged."""
    q = clean_text(request.query.get("q", ""))[:MAX_QUERY]
    page_no = page_number(request)
    terms = pages.query_terms(q)
    key = "/search?" + urlencode({"q": nfc(q), "page": page_no})

    async def render() -> tuple[int, bytes]:
        settings = request.app[settings_key]
        size = settings.page_size
        async with request.app[pool_key].connection() as conn:
            chrome = await site.chrome(conn)
            found = queries.Found([], 0)
            if terms:
                found = await queries.search(
                    conn, search_text(q), limit=size, offset=(page_no - 1) * size
                )
        ctx = pages.base_context(
            settings,
            chrome,
            title=f"{LABELS['search']}: {q} - {settings.site_name}"
            if q
            else f"{LABELS['search']} - {settings.site_name}",
            canonical="/search",
        )
        ctx["page"]["noindex"] = True
        more = page_no * size < found.total
        ctx.update(
            q=q,
            total=found.total,
            more_matches=found.more,
            results=[pages.search_card(a, settings.zone, terms) for a in found.articles],
            pagination=_pagination(page_no, more, partial(_search_url, q)),
        )
        return 200, _render(request, "search.html", ctx)

    return await serve_page(request, render, key=key, store=False)


async def stats(request: web.Request) -> web.Response:
    figures = await request.app[statistics_key].read(request)
    return web.json_response(figures, headers={"Cache-Control": "no-store"})


async def serve_page(
    request: web.Request,
    render: Render,
    *,
    key: str,
    article_id: int | None = None,
    store: bool = True,
) -> web.StreamResponse:
    """Every page answered 200 or 304 here is a page view (shared/counting/record.py says what
    else counts).

    `key` names the page (its path and the query parameters that change it), so that other
    query strings neither miss the cache nor fill it. With `store=False` (search) the page is
    rendered on every 200, and a matching If-None-Match is answered without rendering: such a
    page is always a 200, and only the site version and the statistics can change it.
    """
    cache = request.app[cache_key]
    live = cache.current() or await cache.live()
    ready = cache.ready(key, live) if store else None
    if ready is None:
        etag = page_etag(live, key)
        body = await cache.get(live.version, key) if store else None
        if body is None:
            if not store and not_modified(request, etag):
                return _not_modified(request, etag, article_id)
            try:
                status, body = await render()
            except DEPENDENCY_ERRORS:
                held = cache.last(key) if store else None
                if held is None:
                    raise  # answered 503 (shared/web.py)
                recorder = request.app.get(hits_key)
                return _ready_answer(request, held, recorder, article_id, request.path)
            if status == 301:
                raise web.HTTPMovedPermanently(location=body.decode())
            if status != 200:
                return _html(status, _with_stats(body, live))
            if store:
                await cache.put(live.version, key, body)
        if not store:
            response = _html(200, _with_stats(body, live), etag)
            record(request, response, article_id)
            return response
        ready = await request.app[packing_key].ready(
            cache, key, live, _with_stats(body, live), etag
        )
    recorder = request.app.get(hits_key)
    # The request's path, held for the recorder: the same object view after view, whose hash
    # is known (the front door answers this path only).
    path = request.path
    front.remember(request, partial(_quick_page, cache, recorder, key, article_id, path))
    return _ready_answer(request, ready, recorder, article_id, path)


def _ready_answer(
    request: web.Request,
    ready: Ready,
    recorder: Recorder | None,
    article_id: int | None,
    path: str,
) -> web.StreamResponse:
    # Only a page known to be a 200 at this version is ever answered 304.
    response: web.StreamResponse
    if not_modified(request, ready.etag):
        response = _304(ready.etag)
    else:
        coding = accepted_encoding(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        if coding and coding in ready.packed:
            response = PreparedResponse(*ready.packed[coding])
        else:
            response = PreparedResponse(ready.head, ready.data)
    if recorder is not None:
        recorder.page_view(request, response, article_id, path)  # a 304 is a page view too
    return response


def _quick_page(
    cache: PageCache,
    recorder: Recorder | None,
    key: str,
    article_id: int | None,
    path: str,
    request: web.Request,
) -> web.StreamResponse | None:
    """The front door's answer for a page answered from memory before (see front.py): the
    same, while the statistics snapshot and the page's prepared answer still hold."""
    live = cache.current()
    ready = cache.ready(key, live) if live is not None else None
    return _ready_answer(request, ready, recorder, article_id, path) if ready is not None else None


def page_etag(live: Live, key: str) -> str:
    """Weak: the bytes are the same, but a cached copy is "equivalent" only as long as the
    statistics block (part of the page) shows the same numbers."""
    digest = hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).hexdigest()
    return f'W/"{live.version}-{digest}-{live.online}-{live.total}"'


def _not_modified(request: web.Request, etag: str, article_id: int | None) -> web.Response:
    response = _304(etag)
    record(request, response, article_id)  # the reader saw the page: it counts
    return response


def _304(etag: str) -> web.Response:
    return web.Response(
        status=304,
        headers={"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"},
    )


class Packing:
    """The compressed forms of pages being prepared (see shared.prepared.compressed): each
    made once per page and statistics snapshot, in a thread, however many requests wait for
    it; then every answer of that snapshot is a lookup."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, Live], asyncio.Future[Ready]] = {}

    async def ready(self, cache: PageCache, key: str, live: Live, data: bytes, etag: str) -> Ready:
        job = self.pending.get((key, live))
        if job is None:
            job = asyncio.ensure_future(self._make(cache, key, live, data, etag))
            self.pending[(key, live)] = job
            job.add_done_callback(lambda _: self.pending.pop((key, live), None))
        return await asyncio.shield(job)

    @staticmethod
    async def _make(cache: PageCache, key: str, live: Live, data: bytes, etag: str) -> Ready:
        packed = await asyncio.to_thread(compressed, data)
        return cache.prepare(key, live, data, etag, packed)


packing_key = web.AppKey("packing", Packing)


async def error_page(
    request: web.Request, status: int, chrome: site.Chrome | None = None, *, category: bool = False
) -> tuple[int, bytes]:
    settings: Settings = request.app[settings_key]
    if chrome is None:
        async with request.app[pool_key].connection() as conn:
            chrome = await site.chrome(conn)
    title, message = {
        404: (LABELS["not_found_title"], LABELS["not_found_message"]),
        410: (LABELS["gone_title"], LABELS["gone_message"]),
    }.get(status, (LABELS["error_title"], ""))
    if category and status == 410:
        title, message = LABELS["category_gone_title"], LABELS["category_gone_message"]
    ctx = pages.base_context(
        settings,
        chrome,
        title=f"{title} - {settings.site_name}",
        canonical=request.path,
    )
    ctx["page"]["noindex"] = True
    ctx.update(status=status, title=title, message=message)
    return status, _render(request, "error.html", ctx)


async def retired(
    request: web.Request, chrome: site.Chrome | None, to: str | None
) -> tuple[int, bytes]:
    """A retired category's page or feed: 301 to where an admin sends its readers (`to`), or
    410 with a page that says so."""
    if to:
        return 301, to.encode()
    return await error_page(request, 410, chrome, category=True)


async def retired_answer(request: web.Request, to: str | None) -> web.StreamResponse:
    """`retired` as an answer, for what is not a cached page (a retired category's feeds)."""
    status, body = await retired(request, None, to)
    if status == 301:
        raise web.HTTPMovedPermanently(location=body.decode())
    live = await request.app[cache_key].live()
    return _html(status, _with_stats(body, live))


async def html_error(request: web.Request, status: int) -> web.StreamResponse:
    """Readers who reach an unknown address get a page in Vietnamese, not JSON."""
    _, body = await error_page(request, status)
    live = await request.app[cache_key].live()
    return _html(status, _with_stats(body, live))


def _render(request: web.Request, template: str, ctx: dict[str, Any]) -> bytes:
    return request.app[templates_key].get_template(template).render(ctx).encode()


def _with_stats(body: bytes, live: Live) -> bytes:
    return body.replace(pages.ONLINE_MARK.encode(), str(live.online).encode()).replace(
        pages.TOTAL_MARK.encode(), str(live.total).encode()
    )


def _html(status: int, body: bytes, etag: str | None = None) -> web.Response:
    headers = {"Cache-Control": "no-cache"}
    if etag:
        headers["ETag"] = etag
    response = web.Response(
        status=status, body=body, content_type=HTML, charset="utf-8", headers=headers
    )
    response.enable_compression()  # (not stored: compressed per answer, off the event loop)
    return response


def page_number(request: web.Request, last: int = MAX_PAGE) -> int:
    """The `page` query parameter (listings, search, feeds): 1 when absent; a 400 saying what
    is allowed when it is not a whole number from 1 to `last`."""
    raw = request.query.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= last:
        raise web.HTTPBadRequest(text=f"page must be a whole number from 1 to {last}")
    return int(raw)


def _pagination(page_no: int, more: bool, url: Callable[[int], str]) -> dict[str, Any]:
    return {
        "page": page_no,
        "prev_url": url(page_no - 1) if page_no > 1 else None,
        "next_url": url(page_no + 1) if more else None,
    }


def _page_url(path: str, page_no: int) -> str:
    return path if page_no == 1 else f"{path}?page={page_no}"


def _search_url(q: str, page_no: int) -> str:
    params: dict[str, Any] = {"q": q}
    if page_no > 1:
        params["page"] = page_no
    return "/search?" + urlencode(params)
