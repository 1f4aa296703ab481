"""The one write path for articles: the API's handlers and the desk's forms both call these,
so validation, sanitizing, photos, idempotency and edit collisions behave the same whichever
way an article comes in.

Each function takes the request (for the answer's links and the app's clients), the principal
(the token, or the desk's session stands in for one) and plain data; it raises `Problem` for
anything the submitter must fix, and sends the tasks after its transaction has committed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.ingest import idempotency, uploads
from services.ingest.views import review
from services.ingest.views.common import enqueue, links, load_for, tasks_key
from shared import articles, bulk, history
from shared.articles import ArticleDraft, Conn, ImageDraft
from shared.models import Article, Category
from shared.problems import Problem, field_error, invalid
from shared.settings import Settings
from shared.shapes import Submission, check_article, check_patch
from shared.tasks import ARTICLE_CHANGED, PROCESS_ARTICLE, PUBLISH_MANY
from shared.tokens import Token
from shared.web import media_key, pool_key, settings_key

BATCH_LIMIT = 500


def batch_bytes(settings: Settings) -> int:
    """A batch's body is read whole, as any JSON body: 16 times BANTIN_MAX_JSON_BYTES (32 MB by
    default, 500 articles of 64 kB)."""
    return 16 * settings.max_json_bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a submission answers: 202 with the body, or a replay of an earlier answer."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


async def submit_article(
    request: web.Request,
    token: Token,
    key: str | None,
    data: Any,
    photos: dict[str, uploads.Photo],
    fingerprint: str,
) -> Accepted:
    """Check, store and commit a new article with its (already streamed) photos, then send it
    to the workers. Photos not adopted here are the caller's to discard."""
    settings = request.app[settings_key]
    submission, errors = check_article(data, max_photos=settings.max_photos)
    if submission is not None:
        errors = _match_photos(submission, photos)
    if submission is None or errors:
        raise invalid(errors)
    store = request.app[media_key]
    async with request.app[pool_key].connection() as conn:
        category = await _category(conn, submission.category)
        if key is not None:
            replay = await idempotency.claim(conn, token.id, key, fingerprint)
            if replay is not None:
                return Accepted(replay.status, replay.response, replayed=True)
        adopted = []
        try:
            for photo in photos.values():
                if await asyncio.to_thread(store.adopt_original, photo.temp, photo.sha256):
                    adopted.append(photo.sha256)
            async with conn.transaction():
                article_id = await articles.insert_article(
                    conn, _draft(submission, category.id, photos), token.id
                )
                held = await review.on_submit(conn, settings, token, article_id)
                # Everything the answer needs is known: no need to read the article back.
                path = f"/{category.slug}/{submission.slug}-{article_id}"
                body: dict[str, Any] = {
                    "id": article_id,
                    "status": "pending" if held else "processing",
                    "links": links(request, article_id, path),
                }
                if key is not None:
                    await idempotency.complete(conn, token.id, key, 202, body)
        except BaseException:
            for sha in adopted:  # nothing half-written: the store forgets this request's photos
                store.original(sha).unlink(missing_ok=True)
            if key is not None:
                await idempotency.release(conn, token.id, key)
            raise
    # Sent only now that the article is committed: a worker never looks for a row that is not
    # there yet. An article held for review is sent when an editor approves it.
    if not held:
        await enqueue(request.app, PROCESS_ARTICLE, article_id)
    return Accepted(202, body)


async def edit_article(
    request: web.Request, token: Token, article_id: int, if_match: str | None, changes: Any
) -> Article:
    """Apply `changes` to the article's text. `If-Match` (the version read) is required, so an
    edit made from a stale copy is refused (412) instead of silently undoing another."""
    settings = request.app[settings_key]
    if not if_match:
        raise Problem(
            428,
            "Precondition required",
            "Send 'If-Match' with the ETag from"
            " GET /api/v1/articles/{id}, so that edits never overwrite each other.",
            kind="if-match-required",
        )
    errors = check_patch(changes)
    if errors:
        raise invalid(errors)
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, article_id, token)
        check_match(if_match, article.etag)
        current = {
            "title": article.title,
            "category": article.category.slug,
            "summary": article.summary,
            "body": await articles.body_source(conn, article.id),
            "body_format": article.body_format,
            "author": article.author,
            "unit": article.unit,
            "published_at": article.published_at.isoformat() if article.published_at else None,
            "tags": list(article.tags),
            "gallery_title": article.gallery_title,
            "images": [
                {"part": i.part, "caption": i.caption, "role": i.role} for i in article.images
            ],
        }
        submission, errors = check_article(
            {**current, **changes}, max_photos=max(settings.max_photos, len(article.images))
        )
        if submission is None:
            raise invalid(errors)
        # An article already in a retired category may still be corrected where it is.
        category = await _category(
            conn, submission.category, new=submission.category != article.category.slug
        )
        draft = _draft(submission, category.id, {})
        async with conn.transaction():
            if not await articles.update_article(conn, article.id, article.version, draft):
                raise Problem(
                    412,
                    "Precondition failed",
                    "The article changed since you read it; GET it again and re-apply your edit.",
                    kind="stale-etag",
                )
            process = await review.on_edit(conn, settings, token, article)
        updated = await articles.get_article(conn, article.id)
    if process:
        await enqueue(request.app, PROCESS_ARTICLE, article.id)
    await enqueue(
        request.app, ARTICLE_CHANGED, article.id, sorted({article.category.slug, category.slug})
    )
    return updated


async def unpublish_article(
    request: web.Request, token: Token, article_id: int, if_match: str | None
) -> Article:
    """The page answers 410 Gone and the article leaves the feeds. The row and its photos are
    kept, so the history stays and an editor can see what was removed."""
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, article_id, token)
        if if_match:
            check_match(if_match, article.etag)
        if article.status != "unpublished":
            async with conn.transaction():
                await articles.mark(conn, article.id, "unpublished")
                await review.on_unpublish(conn, token, article.id)
        updated = await articles.get_article(conn, article.id)
    await enqueue(request.app, ARTICLE_CHANGED, article.id, [article.category.slug])
    return updated


def check_match(if_match: str, etag: str) -> None:
    """Refuse (412) an edit whose If-Match (quoted ETags, as views.common.if_match writes the
    header aiohttp parsed, or the desk's form sends) does not name the current version."""
    tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
    if "*" not in tags and etag not in tags:
        raise Problem(
            412,
            "Precondition failed",
            f"If-Match {if_match} does not match the"
            f" article's current ETag {etag}; GET it again and re-apply your edit.",
            kind="stale-etag",
            headers={"ETag": etag},
        )


def _match_photos(submission: Submission, photos: dict[str, uploads.Photo]) -> list[dict[str, str]]:
    errors = []
    listed = {image["part"] for image in submission.images}
    for n, image in enumerate(submission.images):
        if image["part"] not in photos:
            how = (
                (
                    "photos are sent as multipart/form-data, one part per photo, with the JSON"
                    " in a part named 'article'"
                )
                if not photos
                else "no such part in the request"
            )
            errors.append(field_error(f"images.{n}.part", f"{image['part']!r}: {how}"))
    for name in photos:
        if name not in listed:
            errors.append(
                field_error("images", f"part {name!r} was sent but is not listed in images")
            )
    return errors


async def submit_batch(
    request: web.Request, token: Token, key: str | None, items: list[Any], fingerprint: str
) -> Accepted:
    """Check every article, write the acceptable ones in one transaction by the bulk path the
    importer uses (shared/bulk.py: COPY, one commit for the batch), then send what follows.
    Answers one result per item, in order: the 202 body, or the problem's body. With an
    Idempotency-Key, the same batch sent again gets the first answer back.

    A batch carries no photos, so the workers have nothing to render: the articles that are
    due go to them in one `publish_many`, which publishes them in one statement and makes
    pages and feeds stale once for the whole batch (one process_article each, before, cost
    the workers a task, a publication and a site change per article); one dated in the future
    goes by `process_article`, which schedules it for its time. Until published they are
    `processing`, so a lost message is found by the sweep, as for one article."""
    settings = request.app[settings_key]
    # Sanitizing hundreds of bodies takes a while: off the event loop.
    checked = await asyncio.to_thread(
        lambda: [check_article(item, max_photos=settings.max_photos) for item in items]
    )
    results: list[Any] = [None] * len(items)
    held = review.holds(settings, token)
    rows: list[tuple[int, bulk.BulkArticle]] = []
    async with request.app[pool_key].connection() as conn:
        categories = {c.slug: c for c in await articles.list_categories(conn, retired=True)}
        for n, (submission, errors) in enumerate(checked):
            if submission is not None:
                errors = _match_photos(submission, {}) + _known_category(
                    submission.category, categories
                )
            if submission is None or errors:
                results[n] = invalid(errors).body()
                continue
            draft = _draft(submission, categories[submission.category].id, {})
            status = "pending" if held else "processing"
            row = bulk.BulkArticle(draft, submission.category, status=status, submitted_by=token.id)
            rows.append((n, row))
        if key is not None:
            replay = await idempotency.claim(conn, token.id, key, fingerprint)
            if replay is not None:
                return Accepted(replay.status, replay.response, replayed=True)
        try:
            async with conn.transaction():
                await bulk.write_batch(conn, [row for _, row in rows])
                ids = [row.id for _, row in rows if row.id is not None]
                await history.record_many(conn, ids, token.id, "submitted")
                for n, row in rows:
                    assert row.id is not None
                    results[n] = {
                        "id": row.id,
                        "status": row.status,
                        "links": links(request, row.id, row.path),
                    }
                body = {"accepted": len(ids), "refused": len(items) - len(ids), "results": results}
                if key is not None:
                    await idempotency.complete(conn, token.id, key, 200, body)
        except BaseException:
            if key is not None:
                await idempotency.release(conn, token.id, key)
            raise
    # Committed: the workers never look for rows that are not there yet. Held ones are sent
    # when an editor approves them.
    if not held and ids:
        due: list[int | None] = []
        ahead: list[tuple[int | None]] = []
        for _, row in rows:
            if articles.is_due(row.draft.published_at):
                due.append(row.id)
            else:
                ahead.append((row.id,))
        if due:
            await request.app[tasks_key].send(PUBLISH_MANY, due)
        await request.app[tasks_key].send_many(PROCESS_ARTICLE, ahead)
    return Accepted(200, body)


def _known_category(slug: str, categories: dict[str, Category]) -> list[dict[str, str]]:
    """The rules no declaration can state: the category exists and takes articles."""
    if slug not in categories:
        return [_unknown_category(slug)]
    refusal = categories[slug].refusal()
    return [field_error("category", refusal)] if refusal else []


def _unknown_category(slug: str) -> dict[str, str]:
    """The rule no declaration can state: the category exists."""
    return field_error("category", f"unknown category {slug!r}; GET /api/v1/categories lists them")


async def _category(conn: Conn, slug: str, *, new: bool = True) -> Category:
    """The category an article goes into (`new`: it was not there before)."""
    try:
        category = await articles.category_by_slug(conn, slug)
    except articles.NotFound as err:
        raise invalid([_unknown_category(slug)]) from err
    refusal = category.refusal() if new else None
    if refusal:
        raise invalid([field_error("category", refusal)])
    return category


def _draft(
    submission: Submission, category_id: int, photos: dict[str, uploads.Photo]
) -> ArticleDraft:
    images = []
    for image in submission.images:
        photo = photos.get(image["part"])
        if photo is None:  # an edit: the photos stay as they are
            continue
        images.append(
            ImageDraft(
                part=image["part"],
                caption=image["caption"],
                role=image["role"],
                sha256=photo.sha256,
                format=photo.info.format,
                bytes=photo.bytes,
                width=photo.info.upright_width,
                height=photo.info.upright_height,
            )
        )
    return submission.draft(category_id, images)
