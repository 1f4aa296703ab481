"""Rendering an article's photos, in parallel across workers, and publishing it as soon as
each can be shown.

`process_article` sends one `render_image` per photo still to render (queue "images"); each
task makes what a first page view needs (shared.photos.render's "first" stage: one JPEG or
PNG and one WebP width), sends `render_rest` for the others (AVIF, every other width) and,
when it finds no photo of its article left to render, sends `process_article` again, which
then publishes. `render_rest` records the rest and, if the article is published by then,
makes its pages and feeds anew so they offer them. No chord and no result backend are
needed, and every step is safe to run twice: a photo has `rendered_at` after its first stage
and `completed_at` after the rest, renditions are content-addressed files, and publishing is
guarded by the article's status.

A photo that cannot be rendered (a truncated or corrupt file) is marked with the reason and
not retried (a broken file stays broken); its article publishes without it, as with every
photo that has no rendition: one photo never costs a whole article.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from shared.photos.probe import ImageRefused
from shared.photos.render import Rendered, RenditionOut, Stage, render
from shared.photos.store import media_store
from workers.app import (
    PROCESS_ARTICLE,
    RENDER_IMAGE,
    RENDER_REST,
    RETRY,
    app,
    pool,
    run,
    settings,
)
from workers.feeds import site_changed

log = logging.getLogger(__name__)

SOFT_LIMIT = 120  # seconds per photo; the hard limit kills a stuck process
HARD_LIMIT = 150


async def pending_images(article_id: int) -> list[int]:
    """Ids of the article's photos still to render (neither rendered nor refused)."""
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM images WHERE article_id = %s AND rendered_at IS NULL"
            " AND error IS NULL ORDER BY position",
            (article_id,),
        )
        return [r["id"] for r in await cur.fetchall()]


def start_rendering(article_id: int) -> str | None:
    """Called by process_article: sends the photos to render. Returns None when none is left
    to render (the article may publish now)."""
    todo = run(pending_images(article_id))
    for image_id in todo:
        app.send_task(RENDER_IMAGE, args=[image_id])
    return "rendering" if todo else None


# Both stages: bounded in time (a stuck libvips call is killed), retried on outages only.
RENDERING = {
    "acks_late": True,
    "soft_time_limit": SOFT_LIMIT,
    "time_limit": HARD_LIMIT,
    **{**RETRY, "max_retries": 3},
}


def _render(row: dict[str, Any], stage: Stage, transparent: bool | None = None) -> Rendered:
    store = media_store(settings())
    return render(
        store.original(row["sha256"]),
        store,
        max_pixels=settings().max_pixels,
        time_limit=SOFT_LIMIT - 10,
        stage=stage,
        transparent=transparent,
    )


@app.task(name=RENDER_IMAGE, **RENDERING)
def render_image(image_id: int) -> str:
    row = run(_image(image_id))
    if row is None:
        return "missing"
    if row["rendered_at"] is None and row["error"] is None:
        try:
            rendered = _render(row, "first")
        except (ImageRefused, SoftTimeLimitExceeded) as err:
            reason = str(err) or "rendering took too long"
            log.warning("photo %s of article %s refused: %s", image_id, row["article_id"], reason)
            run(_record_error(image_id, reason))
            outcome = "failed"
        else:
            run(_record(image_id, rendered))
            log.info("rendered photo %s (%d renditions)", image_id, len(rendered.renditions))
            app.send_task(RENDER_REST, args=[image_id])
            outcome = "rendered"
    else:
        outcome = "rendered" if row["error"] is None else "failed"
    if not run(pending_images(row["article_id"])):
        app.send_task(PROCESS_ARTICLE, args=[row["article_id"]])
    return outcome


@app.task(name=RENDER_REST, **RENDERING)
def render_rest(image_id: int) -> str:
    """The renditions a first page view does without (AVIF, the other widths); then the
    article's pages and feeds anew, if it is published, so that they offer them."""
    row = run(_image(image_id))
    if row is None or row["rendered_at"] is None or row["completed_at"] is not None:
        return "nothing to do"
    rendered: Rendered | None
    try:
        rendered = _render(row, "rest", row["transparent"])
    except (ImageRefused, SoftTimeLimitExceeded) as err:
        # The photo shows with what its first stage made; nothing more will come of it.
        log.warning("photo %s: the other renditions failed: %s", image_id, str(err) or "slow")
        rendered = None
    status, category = run(_record_rest(image_id, rendered))
    # (Read once they are stored: an article published meanwhile was drawn without them.)
    if status == "published":
        site_changed(["all", category])
    return "completed"


async def _image(image_id: int) -> dict[str, Any] | None:
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT i.id, i.article_id, i.part, i.sha256, i.rendered_at, i.completed_at,"
            " i.error,"
            " EXISTS (SELECT FROM renditions r WHERE r.image_id = i.id AND r.format = 'png')"
            " AS transparent"
            " FROM images i WHERE i.id = %s",
            (image_id,),
        )
        return await cur.fetchone()


async def _record_rest(image_id: int, rendered: Rendered | None) -> tuple[str, str]:
    """Store the rest; returns its article's status and category slug once they are stored."""
    async with pool().connection() as conn:
        async with conn.transaction():
            await _insert_renditions(conn, image_id, rendered.renditions if rendered else [])
            await conn.execute("UPDATE images SET completed_at = now() WHERE id = %s", (image_id,))
        cur = await conn.execute(
            "SELECT a.status, c.slug FROM images i JOIN articles a ON a.id = i.article_id"
            " JOIN categories c ON c.id = a.category_id WHERE i.id = %s",
            (image_id,),
        )
        row = await cur.fetchone()
    return (row["status"], row["slug"]) if row else ("missing", "")


async def _insert_renditions(conn: Any, image_id: int, renditions: list[RenditionOut]) -> None:
    for r in renditions:
        await conn.execute(
            "INSERT INTO renditions (image_id, width, height, format, path, bytes)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (image_id, width, format)"
            " DO UPDATE SET path = EXCLUDED.path, height = EXCLUDED.height,"
            " bytes = EXCLUDED.bytes",
            (image_id, r.width, r.height, r.format, r.path, r.bytes),
        )


async def _record(image_id: int, rendered: Rendered) -> None:
    async with pool().connection() as conn, conn.transaction():
        await _insert_renditions(conn, image_id, rendered.renditions)
        await conn.execute(
            "UPDATE images SET width = %s, height = %s, placeholder = %s, rendered_at = now()"
            " WHERE id = %s",
            (rendered.width, rendered.height, rendered.placeholder, image_id),
        )


async def _record_error(image_id: int, reason: str) -> None:
    async with pool().connection() as conn:
        await conn.execute("UPDATE images SET error = %s WHERE id = %s", (reason[:500], image_id))
