"""Rendering an article's photos, in parallel across workers, before it publishes.

`process_article` sends one `render_image` per photo still to render (queue "images"); each
task renders one photo and, when it finds no photo of its article left to render, sends
`process_article` again, which then publishes. No chord and no result backend are needed, and
every step is safe to run twice: a rendered photo has `rendered_at`, renditions are
content-addressed files, and publishing is guarded by the article's status.

A photo that cannot be rendered marks its article `failed` with the reason, and is not retried:
a broken file stays broken.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from celery.exceptions import SoftTimeLimitExceeded

from shared import articles
from shared.imaging import ImageRefused
from shared.media import media_store
from workers.app import PROCESS_ARTICLE, RENDER_IMAGE, app, pool, run, settings
from workers.images import Rendered, render

log = logging.getLogger(__name__)

SOFT_LIMIT = 120  # seconds per photo; the hard limit kills a stuck process
HARD_LIMIT = 150


async def pending_images(article_id: int) -> tuple[list[int], list[str]]:
    """(ids of photos still to render, reasons of photos that failed)."""
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT id, part, error FROM images WHERE article_id = %s AND rendered_at IS NULL"
            " ORDER BY position",
            (article_id,),
        )
        rows = await cur.fetchall()
    return (
        [r["id"] for r in rows if r["error"] is None],
        [f"photo {r['part']!r}: {r['error']}" for r in rows if r["error"] is not None],
    )


def start_rendering(article_id: int) -> str | None:
    """Called by process_article: sends the photos to render, or says why it cannot publish.
    Returns None when every photo is rendered (the article may publish now)."""
    todo, failures = run(pending_images(article_id))
    if failures:
        run(_fail(article_id, "; ".join(failures)))
        return "failed"
    for image_id in todo:
        app.send_task(RENDER_IMAGE, args=[image_id])
    return "rendering" if todo else None


@app.task(
    name=RENDER_IMAGE,
    acks_late=True,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
    autoretry_for=(OSError, psycopg.OperationalError),
    retry_backoff=True,
    max_retries=3,
)
def render_image(image_id: int) -> str:
    row = run(_image(image_id))
    if row is None:
        return "missing"
    if row["rendered_at"] is None and row["error"] is None:
        store = media_store(settings())
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
            run(_fail(row["article_id"], f"photo {row['part']!r}: {reason}"))
            return "failed"
        run(_record(image_id, rendered))
        log.info("rendered photo %s (%d renditions)", image_id, len(rendered.renditions))
    todo, failures = run(pending_images(row["article_id"]))
    if not todo and not failures:
        app.send_task(PROCESS_ARTICLE, args=[row["article_id"]])
    return "rendered"


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


async def _fail(article_id: int, reason: str) -> None:
    async with pool().connection() as conn:
        await articles.mark(conn, article_id, "failed", error=reason[:1000], expect=("processing",))
