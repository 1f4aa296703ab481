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

`render_rest` is seconds of CPU on a queue of its own, which may be long: it is sent once per
photo (`rest_queued_at` is when it was last sent or started; beat's sweep sends it again only
once that is older than a render can last, see `resend_rest`), and a photo's rest is rendered
by one worker at a time (a Redis lock per photo; another copy of the task finds it taken).
A rest that runs out of time is tried once more, later; if it is too slow again, the photo is
completed with what its first stage made and the reason in `rest_error`.

A photo that cannot be rendered (a truncated or corrupt file) is marked with the reason and
not retried (a broken file stays broken); its article publishes without it, as with every
photo that has no rendition: one photo never costs a whole article.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError

from shared import keys
from shared.photos.probe import ImageRefused
from shared.photos.render import Rendered, RenditionOut, Stage, TooSlow, render
from shared.photos.store import media_store
from shared.tasks import RENDITIONS
from workers.app import (
    PROCESS_ARTICLE,
    RENDER_IMAGE,
    RENDER_REST,
    RETRY,
    app,
    pool,
    redis,
    run,
    settings,
)
from workers.feeds import site_changed

log = logging.getLogger(__name__)

SOFT_LIMIT = 120  # seconds per photo; the hard limit kills a stuck process
HARD_LIMIT = 150
# A photo's rest is locked for longer than its render can last (the hard limit kills it), and
# no longer: the lock of a killed render frees itself.
REST_LOCK = HARD_LIMIT + 10
# A rest that ran out of time is tried this many times more, this much later (the machine may
# be less busy then), before the photo is completed without it.
SLOW_RETRIES = 1
SLOW_RETRY_AFTER = 60
# A photo whose rest was sent or started this long ago and is still not complete has lost its
# message: by then its render has ended or been killed, its lock has expired, and a retry after
# running out of time has started. Until then it is waiting in the queue (behind others,
# perhaps for long) or rendering, and sending it again would only pile copies up in the queue.
REST_RESEND_AFTER = SOFT_LIMIT + SLOW_RETRY_AFTER + 30  # 3.5 minutes
# A rest started this many times and never completed (killed at the hard limit each time, or
# with its worker) is given up: the photo is completed with what its first stage made.
REST_TRIES = 3


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
            run(_record(image_id, rendered))  # marks its rest as sent, too
            log.info("rendered photo %s (%d renditions)", image_id, len(rendered.renditions))
            app.send_task(RENDER_REST, args=[image_id])
            outcome = "rendered"
    else:
        outcome = "rendered" if row["error"] is None else "failed"
    if not run(pending_images(row["article_id"])):
        app.send_task(PROCESS_ARTICLE, args=[row["article_id"]])
    return outcome


@app.task(name=RENDER_REST, bind=True, **RENDERING)
def render_rest(self: Task, image_id: int, slow: int = 0, waited: bool = False) -> str:
    """The renditions a first page view does without (AVIF, the other widths); then the
    article's pages and feeds anew, if it is published, so that they offer them. `slow`: how
    many times it ran out of time before; `waited`: it found the photo locked once already."""
    lock = redis().lock(keys.rest_lock(image_id), timeout=REST_LOCK)
    if not lock.acquire(blocking=False):
        # Another worker renders it, or one was killed rendering it and this is its message
        # back (acks_late): look once more when the lock has expired, rather than leave the
        # photo to the sweep's resend minutes later. A render still running by then has
        # outlived its hard limit: it was killed.
        left = redis().pttl(keys.rest_lock(image_id))
        if waited or left < 0:
            return "already rendering"
        raise self.retry(
            kwargs={"slow": slow, "waited": True},
            countdown=left / 1000 + 1,
            max_retries=self.request.retries + 1,
        )
    try:
        outcome = _render_rest(image_id, last_chance=slow >= SLOW_RETRIES)
    finally:
        with contextlib.suppress(LockError):  # expired (the render outlived it): not ours now
            lock.release()
    if outcome == "too slow":
        # Allowed whatever outage retries came before (`slow` bounds these); it does count as
        # one of the task's retries, so one fewer is left for an outage after it.
        raise self.retry(
            kwargs={"slow": slow + 1, "waited": waited},
            countdown=SLOW_RETRY_AFTER,
            max_retries=self.request.retries + 1,
        )
    return outcome


def _render_rest(image_id: int, *, last_chance: bool) -> str:
    row = run(_image(image_id))
    if row is None or row["rendered_at"] is None or row["completed_at"] is not None:
        return "nothing to do"
    run(_mark_queued(image_id, started=True))  # the sweep leaves it alone while it may run
    rendered: Rendered | None = None
    reason = None
    try:
        rendered = _render(row, "rest", row["transparent"])
    except (TooSlow, SoftTimeLimitExceeded) as err:
        reason = str(err) or "rendering took too long"
        if not last_chance:
            log.warning(
                "photo %s: the other renditions ran out of time (%s); trying again in %d s",
                image_id,
                reason,
                SLOW_RETRY_AFTER,
            )
            run(_mark_queued(image_id))
            return "too slow"
    except ImageRefused as err:
        reason = str(err)
    if reason is not None:
        # The photo shows with what its first stage made; nothing more will come of it.
        log.warning("photo %s: completed without the other renditions: %s", image_id, reason)
    status, category = run(_record_rest(image_id, rendered, reason))
    # (Read once they are stored: an article published meanwhile was drawn without them.)
    if status == "published":
        site_changed(["all", category])
    return "completed" if reason is None else "completed without the rest"


def resend_rest() -> int:
    """Called by beat's sweep: sends `render_rest` again for the photos whose message was lost
    (see REST_RESEND_AFTER), marking each as sent in the same statement, so that the next sweep
    leaves it alone; returns how many. Nothing is sent while render_rest messages wait in their
    queue: those are not lost, only not taken yet (a long import's photos, or no renditions
    worker running), and their photos would only be sent twice; a lost one is sent once the
    queue is empty. A photo whose rest was started REST_TRIES times without completing is
    completed without it, with the reason."""
    if redis().llen(RENDITIONS):
        return 0
    lost = run(_lost_rest())
    for image_id in lost:
        app.send_task(RENDER_REST, args=[image_id])
    return len(lost)


async def _lost_rest() -> list[int]:
    stale = (
        "completed_at IS NULL AND error IS NULL"
        " AND coalesce(rest_queued_at, rendered_at) < now() - make_interval(secs => %s)"
    )
    async with pool().connection() as conn:
        cur = await conn.execute(
            f"UPDATE images SET completed_at = now(), rest_error = %s WHERE {stale}"
            " AND rest_tries >= %s RETURNING id",
            (
                f"stopped {REST_TRIES} times before the end (the time limit, or its worker died)",
                REST_RESEND_AFTER,
                REST_TRIES,
            ),
        )
        for row in await cur.fetchall():
            log.warning("photo %s: completed without the other renditions", row["id"])
        cur = await conn.execute(
            "UPDATE images SET rest_queued_at = now() WHERE id IN ("
            f" SELECT id FROM images WHERE {stale}"
            " ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING id",
            (REST_RESEND_AFTER,),
        )
        return sorted(r["id"] for r in await cur.fetchall())


async def _mark_queued(image_id: int, *, started: bool = False) -> None:
    """The rest is sent (or, `started`, begins once more): the sweep leaves it alone."""
    tries = ", rest_tries = rest_tries + 1" if started else ""
    async with pool().connection() as conn:
        await conn.execute(
            f"UPDATE images SET rest_queued_at = now(){tries} WHERE id = %s", (image_id,)
        )


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


async def _record_rest(
    image_id: int, rendered: Rendered | None, reason: str | None
) -> tuple[str, str]:
    """Store the rest (or why there is none); returns its article's status and category slug
    once they are stored."""
    async with pool().connection() as conn:
        async with conn.transaction():
            await _insert_renditions(conn, image_id, rendered.renditions if rendered else [])
            await conn.execute(
                "UPDATE images SET completed_at = now(), rest_error = %s WHERE id = %s",
                (reason[:500] if reason else None, image_id),
            )
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
            "UPDATE images SET width = %s, height = %s, placeholder = %s, rendered_at = now(),"
            " rest_queued_at = now() WHERE id = %s",
            (rendered.width, rendered.height, rendered.placeholder, image_id),
        )


async def _record_error(image_id: int, reason: str) -> None:
    async with pool().connection() as conn:
        await conn.execute("UPDATE images SET error = %s WHERE id = %s", (reason[:500], image_id))
