"""Feed rebuilds: coalesced, locked, and stored with their validators for the publisher.

A publication marks its scopes dirty and queues one rebuild a second later unless one is queued
already, so a burst of publications gives about one rebuild per feed per second. The rebuild
clears the queued flag before it reads the dirty set, so a publication that lands during a
rebuild queues the next one: the newest publication is always in a feed soon after.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from email.utils import format_datetime

import psycopg

from shared import articles, keys
from shared.html import best, resolve_photos, simple_img
from shared.models import Article, Category
from workers.app import REBUILD_FEEDS, app, pool, redis, run, settings
from workers.feedrender import CONTENT_TYPES, FORMATS, FeedEntry, FeedImage, FeedMeta, render_feed

log = logging.getLogger(__name__)

COALESCE_SECONDS = 1.0
MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}


def mark_dirty(scopes: list[str]) -> None:
    r = redis()
    r.sadd(keys.FEEDS_DIRTY, *scopes)
    # The flag expires in case its task is lost; the sweep also notices dirty scopes.
    if r.set(keys.FEEDS_SCHEDULED, "1", nx=True, ex=30):
        app.send_task(REBUILD_FEEDS, countdown=COALESCE_SECONDS)


def ensure_present() -> None:
    """Mark dirty every scope whose feed is missing (first start, or Redis emptied), and
    re-queue a rebuild when dirty scopes wait with none queued."""
    scopes = ["all", *(c.slug for c in run(_categories()))]
    r = redis()
    missing = [s for s in scopes if not r.exists(keys.feed(s, "rss"))]
    if missing:
        r.sadd(keys.FEEDS_DIRTY, *missing)
    if r.scard(keys.FEEDS_DIRTY) and r.set(keys.FEEDS_SCHEDULED, "1", nx=True, ex=30):
        app.send_task(REBUILD_FEEDS, countdown=COALESCE_SECONDS)


@app.task(
    name=REBUILD_FEEDS,
    acks_late=True,
    autoretry_for=(OSError, psycopg.OperationalError),
    retry_backoff=True,
    max_retries=5,
)
def rebuild_feeds() -> list[str]:
    r = redis()
    with r.lock(keys.FEEDS_LOCK, timeout=300, blocking_timeout=120):
        r.delete(keys.FEEDS_SCHEDULED)
        pipe = r.pipeline(transaction=True)
        pipe.smembers(keys.FEEDS_DIRTY)
        pipe.delete(keys.FEEDS_DIRTY)
        raw, _ = pipe.execute()
        scopes = sorted(s.decode() for s in raw)
        for scope in scopes:
            try:
                run(_rebuild(scope))
            except Exception:
                r.sadd(keys.FEEDS_DIRTY, scope)  # not lost: the next rebuild retries it
                raise
    if scopes:
        log.info("rebuilt feeds %s", ", ".join(scopes))
    return scopes


async def _categories() -> list[Category]:
    async with pool().connection() as conn:
        return await articles.list_categories(conn)


async def _rebuild(scope: str) -> None:
    s = settings()
    async with pool().connection() as conn:
        category = None
        if scope != "all":
            try:
                category = await articles.category_by_slug(conn, scope)
            except articles.NotFound:
                redis().delete(*(keys.feed(scope, fmt) for fmt in FORMATS))
                return
        latest = await articles.latest_published(
            conn, category_id=category.id if category else None, limit=s.feed_size
        )
    base = s.site_url()
    entries = [entry(article, base) for article in latest]
    updated = max((e.updated for e in entries), default=datetime.now(UTC))
    title = s.site_name if category is None else f"{category.name} - {s.site_name}"
    r = redis()
    for fmt in FORMATS:
        meta = FeedMeta(
            title=title,
            description=title,
            home_url=base + (category.path if category else "/"),
            self_url=f"{base}/feeds/{scope}.{fmt}",
            feed_id=f"{base}/feeds/{scope}",
            updated=updated,
            hub_url=s.websub_hub,
            timezone=s.timezone,
        )
        body = render_feed(fmt, meta, entries)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        r.hset(
            keys.feed(scope, fmt),
            mapping={
                "body": body,
                "etag": etag,
                "content_type": CONTENT_TYPES[fmt],
                "last_modified": format_datetime(updated.astimezone(UTC), usegmt=True),
            },
        )


def entry(article: Article, base: str) -> FeedEntry:
    assert article.published_at is not None
    cover = next((i for i in article.images if i.role == "cover" and i.renditions), None)
    cover = cover or next((i for i in article.images if i.renditions), None)
    image = None
    if cover is not None:
        chosen = best(cover.renditions)
        if chosen is not None:
            image = FeedImage(
                url=base + chosen.path,
                mime=MIME[chosen.format],
                width=chosen.width,
                height=chosen.height,
            )
    return FeedEntry(
        id=f"urn:uuid:{article.uuid}",
        url=base + article.path,
        title=article.title,
        summary=article.summary,
        content_html=resolve_photos(article.body_html, article.images, simple_img(base)),
        published=article.published_at,
        updated=max(article.updated_at, article.published_at),
        author=article.author,
        unit=article.unit,
        category=article.category.name,
        image=image,
    )
