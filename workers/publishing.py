"""Publishing: from an accepted article to a live one, now or at its scheduled time.

Every task takes an article id, reloads what it needs and returns early when the work is
already done, so a message delivered twice (acks_late, a sweep, an ETA replay) changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from shared import articles
from workers import feeds, photos
from workers.app import (
    ARTICLE_CHANGED,
    PROCESS_ARTICLE,
    PUBLISH_ARTICLE,
    PUBLISH_MANY,
    RETRY,
    SITE_CHANGED,
    SWEEP,
    app,
    pool,
    run,
)
from workers.feeds import site_changed

log = logging.getLogger(__name__)

# A processing article nobody touched for this long has lost its message: send it again.
STUCK_AFTER = 120


@app.task(name=PROCESS_ARTICLE, acks_late=True, **RETRY)
def process_article(article_id: int) -> str:
    """Render the article's photos (in parallel, see workers/photos.py), then publish it."""
    if run(_status(article_id)) != "processing":
        return "nothing to do"
    waiting = photos.start_rendering(article_id)
    if waiting is not None:
        return waiting
    return run(_publish(article_id, from_statuses=("processing",)))


async def _status(article_id: int) -> str | None:
    async with pool().connection() as conn:
        cur = await conn.execute("SELECT status FROM articles WHERE id = %s", (article_id,))
        row = await cur.fetchone()
    return row["status"] if row else None


@app.task(name=PUBLISH_ARTICLE, acks_late=True, **RETRY)
def publish_article(article_id: int) -> str:
    """The ETA task of a scheduled article; also safe to run early or twice."""
    return run(_publish(article_id, from_statuses=("scheduled",)))


@app.task(name=PUBLISH_MANY, acks_late=True, **RETRY)
def publish_many(article_ids: list[int]) -> int:
    """A batch's due articles, as an ingest from before 2026-12-04 sent them (now a batch
    publishes its own): each goes by `process_article`, which publishes it."""
    for article_id in article_ids:
        app.send_task(PROCESS_ARTICLE, args=[article_id])
    return len(article_ids)


@app.task(name=ARTICLE_CHANGED, acks_late=True, **RETRY)
def article_changed(article_id: int, scopes: list[str]) -> str:
    """After an edit or an unpublication: readers see the change on every page and feed of the
    scopes it touched (its old and new category, and the whole site)."""
    status = run(_changed(article_id))
    if status in ("published", "unpublished", "withdrawn until due"):
        site_changed(["all", *scopes])
    return status


@app.task(name=SITE_CHANGED, acks_late=True, **RETRY)
def site_changed_task(scopes: list[str]) -> None:
    """Something every page shows changed (a category was added): new pages, fresh feeds."""
    site_changed(["all", *scopes])


async def _changed(article_id: int) -> str:
    async with pool().connection() as conn:
        try:
            article = await articles.get_article(conn, article_id)
        except articles.NotFound:
            return "missing"
    if article.status == "scheduled":
        # The new date may be due now (or nearer than the sweep's window).
        return await _publish(article_id, from_statuses=("scheduled",))
    if article.status == "published" and not articles.is_due(article.published_at):
        # Moved into the future: a future date means scheduled, everywhere (listings, feeds,
        # its page), and it publishes again when the date comes.
        if await _publish(article_id, from_statuses=("published",)) == "scheduled":
            return "withdrawn until due"
        return "published"
    return article.status


@app.task(name=SWEEP, **RETRY)
def sweep() -> dict[str, int]:
    """Re-enqueue what would otherwise wait forever after a restart or a lost message, and
    refresh the feeds and pages a lost message left stale."""
    stuck, due = run(_pending())
    for article_id in stuck:
        app.send_task(PROCESS_ARTICLE, args=[article_id])
    # Photos whose first stage is long done and whose other renditions' message was lost.
    renditions = photos.resend_rest()
    for article_id, eta in due:
        app.send_task(PUBLISH_ARTICLE, args=[article_id], eta=eta)
    feeds.ensure_present()
    stale = feeds.refresh_stale()
    run(_expire_keys())
    if stuck or due or renditions:
        log.info(
            "sweep re-enqueued %d processing and %d scheduled articles, %d photos' renditions",
            len(stuck),
            len(due),
            renditions,
        )
    return {
        "processing": len(stuck),
        "scheduled": len(due),
        "renditions": renditions,
        "stale_scopes": len(stale),
    }


async def _expire_keys() -> None:
    async with pool().connection() as conn:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'"
        )


async def _pending() -> tuple[list[int], list[tuple[int, datetime]]]:
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM articles WHERE status = 'processing'"
            " AND updated_at < now() - make_interval(secs => %s) ORDER BY id LIMIT 1000",
            (STUCK_AFTER,),
        )
        stuck = [row["id"] for row in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT id, published_at FROM articles WHERE status = 'scheduled'"
            " AND published_at <= %s ORDER BY published_at LIMIT 1000",
            (datetime.now(UTC) + articles.ETA_WINDOW,),
        )
        due = [(row["id"], row["published_at"]) for row in await cur.fetchall()]
    return stuck, due


async def _publish(article_id: int, *, from_statuses: tuple[str, ...]) -> str:
    async with pool().connection() as conn:
        try:
            article = await articles.get_article(conn, article_id)
        except articles.NotFound:
            log.info("article %s is gone; nothing to publish", article_id)
            return "missing"
        if article.status not in from_statuses:
            return f"already {article.status}"
        now = datetime.now(UTC)
        when = article.published_at
        if when is not None and not articles.is_due(when, now):
            if await articles.mark(conn, article_id, "scheduled", expect=from_statuses):
                if when - now <= articles.ETA_WINDOW:
                    app.send_task(PUBLISH_ARTICLE, args=[article_id], eta=when)
                log.info("article %s scheduled for %s", article_id, when.isoformat())
            return "scheduled"
        if not await articles.mark(
            conn, article_id, "published", published_at=when or now, expect=from_statuses
        ):
            return "raced"
    log.info("published article %s", article_id)
    site_changed(["all", article.category.slug])
    return "published"
