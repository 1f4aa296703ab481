"""Feeds of one scope (the whole site, or a category) from the database: what workers store
for page 1 and what the publisher renders, in a thread, for older pages (RFC 5005).

Reading is one indexed query for `feed_size` articles at an offset, so a rebuild costs the same
with a hundred or a million articles in the database.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import brotli

from shared import articles
from shared.articles import Conn
from shared.feeds.formats import CONTENT_TYPES, FeedEntry, FeedImage, FeedMeta, render_feed
from shared.models import Article, Category
from shared.photos.markup import MIME, best, lead_image, resolve_photos, simple_img
from shared.settings import Settings

MAX_PAGE = 1000
# Brotli's quality for the stored feeds. Feeds are rebuilt after every batch of publications
# (an import rebuilds them every second or so); quality 11 took 5-8 times the CPU of 9 for
# about the same size on a feed of 50 articles (measured 2026-12-03: 3,837 vs 3,823 bytes,
# 52 vs 7 ms), CPU the workers need for publishing.
FEED_BROTLI = 9
_RELATIVE = re.compile(r'(\s(?:href|src)=")(/[^/"][^"]*)"')


class UnknownScope(LookupError):
    pass


class RetiredScope(UnknownScope):
    """A retired category's feeds: none stored; readers get 410, or `redirect_to`'s feeds."""

    def __init__(self, scope: str, redirect_to: str | None) -> None:
        super().__init__(scope)
        self.redirect_to = redirect_to


@dataclass(frozen=True, slots=True)
class Rendered:
    """A feed document as it is stored (its fields are the stored hash's, keys.feed)."""

    body: bytes
    gzip: bytes
    br: bytes
    etag: str
    last_modified: str
    content_type: str

    def mapping(self) -> dict[str, bytes | str]:
        return asdict(self)


async def load(
    conn: Conn, settings: Settings, scope: str, page: int = 1
) -> tuple[Category | None, list[Article], bool]:
    """(category or None for "all", the page's articles newest first, whether older exist)."""
    category = None
    if scope != "all":
        try:
            category = await articles.category_by_slug(conn, scope)
        except articles.NotFound as err:
            raise UnknownScope(scope) from err
        if category.retired_at is not None:
            raise RetiredScope(scope, category.redirect_to)
    size = settings.feed_size
    found = await articles.latest_published(
        conn,
        category_id=category.id if category else None,
        limit=size + 1,
        offset=(page - 1) * size,
    )
    return category, found[:size], len(found) > size


def render(
    settings: Settings,
    scope: str,
    fmt: str,
    category: Category | None,
    latest: list[Article],
    page: int = 1,
    more: bool = False,
) -> Rendered:
    """Render and compress one feed document. CPU work: call it from a worker or a thread."""
    base = settings.site_url()
    entries = [entry(article, base) for article in latest]
    now = datetime.now(UTC)
    # No validator from the future: a date ahead of the clock (a feed holds published articles
    # only, but clocks differ) counts as now.
    updated = min(max((e.updated for e in entries), default=now), now)
    title = settings.site_name if category is None else f"{category.name} - {settings.site_name}"
    feed_url = f"{base}/feeds/{scope}.{fmt}"
    meta = FeedMeta(
        title=title,
        description=title,
        home_url=base + (category.path if category else "/"),
        self_url=feed_url if page == 1 else f"{feed_url}?page={page}",
        feed_id=f"{base}/feeds/{scope}",
        updated=updated,
        hub_url=settings.websub_hub,
        timezone=settings.timezone,
        # RFC 5005 section 3: paged feeds, for readers that catch up.
        first_url=feed_url,
        next_url=f"{feed_url}?page={page + 1}" if more else None,
        prev_url=(feed_url if page == 2 else f"{feed_url}?page={page - 1}") if page > 1 else None,
    )
    body = render_feed(fmt, meta, entries)
    return Rendered(
        body=body,
        gzip=gzip.compress(body, compresslevel=9, mtime=0),
        br=brotli.compress(body, quality=FEED_BROTLI),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=http_date(updated),
        content_type=CONTENT_TYPES[fmt],
    )


def http_date(when: datetime) -> str:
    """An HTTP date (RFC 9110 section 5.6.7), for Last-Modified."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def entry(article: Article, base: str) -> FeedEntry:
    assert article.published_at is not None
    cover = lead_image(article)
    image = None
    if cover is not None:
        chosen = best(cover.renditions)
        if chosen is not None:
            image = FeedImage(
                url=base + chosen.path,
                mime=MIME[chosen.format],
                width=chosen.width,
                height=chosen.height,
                length=chosen.bytes,  # RSS 2.0 <enclosure length>: the file's size in bytes
            )
    content = resolve_photos(article.body_html, article.images, simple_img(base))
    return FeedEntry(
        id=f"urn:uuid:{article.uuid}",
        url=base + article.path,
        title=article.title,
        summary=article.summary,
        # Feed readers resolve relative links against the feed, not the site: make them absolute.
        content_html=_RELATIVE.sub(lambda m: f'{m.group(1)}{base}{m.group(2)}"', content),
        published=article.published_at,
        updated=max(article.updated_at, article.published_at),
        author=article.author,
        unit=article.unit,
        category=article.category.name,
        image=image,
    )
