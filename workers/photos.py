"""Rendering an article's photos, in parallel across workers, before it publishes.

`process_article` sends one `render_image` per photo still to render (queue "images"); each
task renders one photo and, when it finds no photo of its article left to render, sends
`process_article` again, which then publishes. No chord and no result backend are needed, and
every step is safe to run twice: a rendered photo has `rendered_at`, renditions are
content-addressed files, and publishing is guarded by the article's status.

A photo that cannot be rendered (a truncated or corrupt file) is marked with the reason and
not retried (a broken file stays broken); its article publishes without it, as with every
photo that has no rendition: one photo never costs a whole article.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from shared.photos.probe import ImageRefused
from shared.photos.render import Rendered, render
from shared.photos.store import MediaStore
from workers.app import PROCESS_ARTICLE, RENDER_IMAGE, RETRY, app, pool, run, settings

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


@app.task(
    name=RENDER_IMAGE,
    acks_late=True,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
    **{**RETRY, "max_retries": 3},
)
def render_image(image_id: int) -> str:
    row = run(_image(image_id))
    if row is None:
        return "missing"
    if row["rendered_at"] is None and row["error"] is None:
        store = MediaStore(settings().media_dir)
        try:
            rendered = render(
                store.original(row["sha256"]),
                store,
                max_pixels=settings().max_pixels,
                time_limit=SOFT_LIMIT - 10,
            )
        except (ImageRefused, SoftTimeLimitExceeded) as err:
            reason = str(err) or "rendering took too long"
            log.warning("photo %s of article %s refused: %s", image_id, row["article_id"], reason)
            run(_record_error(image_id, reason))
            outcome = "failed"
        else:
            run(_record(image_id, rendered))
            log.info("rendered photo %s (%d renditions)", image_id, len(rendered.renditions))
            outcome = "rendered"
    else:
        outcome = "rendered" if row["error"] is None else "failed"
    if not run(pending_images(row["article_id"])):
        app.send_task(PROCESS_ARTICLE, args=[row["article_id"]])
    return outcome


async def _image(image_id: int) -> dict[str, Any] | None:
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT id, article_id, part, sha256, rendered_at, error FROM images WHERE id = %s",
            (image_id,),
        )
        return await cur.fetchone()


async def _record(image_id: int, rendered: Rendered) -> None:
    async with pool().connection() as conn, conn.transaction():
        for r in rendered.renditions:
            await conn.execute(
                "INSERT INTO renditions (image_id, width, height, format, path, bytes)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (image_id, width, format)"
                " DO UPDATE SET path = EXCLUDED.path, height = EXCLUDED.height,"
                " bytes = EXCLUDED.bytes",
                (image_id, r.width, r.height, r.format, r.path, r.bytes),
            )
        await conn.execute(
            "UPDATE images SET width = %s, height = %s, placeholder = %s, rendered_at = now()"
            " WHERE id = %s",
            (rendered.width, rendered.height, rendered.placeholder, image_id),
        )


async def _record_error(image_id: int, reason: str) -> None:
    async with pool().connection() as conn:
        await conn.execute("UPDATE images SET error = %s WHERE id = %s", (reason[:500], image_id))
