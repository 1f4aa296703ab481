"""Articles: submit (JSON, or multipart with photos), read, edit with If-Match, unpublish."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from aiohttp import web

from services.ingest import idempotency, uploads
from services.ingest.auth import authenticate
from services.ingest.validation import EDITABLE, Submission, check_article
from services.ingest.views.common import article_json, enqueue, links, load_for, read_json
from shared import articles, keys
from shared.articles import ArticleDraft, Conn, ImageDraft
from shared.problems import Problem, field_error, invalid
from shared.tokens import Token
from shared.web import media_key, pool_key, redis_key, settings_key
from workers.app import ARTICLE_CHANGED, PROCESS_ARTICLE

log = logging.getLogger(__name__)


async def create_article(request: web.Request) -> web.Response:
    token = await authenticate(request)
    settings = request.app[settings_key]
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    photos: dict[str, uploads.Photo] = {}
    upload: uploads.Submission | None = None
    if request.content_type.startswith("multipart/"):
        upload = await uploads.read_multipart(request, settings, request.app[media_key])
        data, photos, fingerprint = upload.article, upload.photos, upload.fingerprint()
    else:
        data = await read_json(request)
        fingerprint = hashlib.sha256(await request.read()).hexdigest()
    try:
        return await _create(request, token, key, data, photos, fingerprint)
    finally:
        if upload is not None:
            upload.discard()  # whatever was not adopted into the store


async def _create(
    request: web.Request,
    token: Token,
    key: str | None,
    data: Any,
    photos: dict[str, uploads.Photo],
    fingerprint: str,
) -> web.Response:
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
                return web.json_response(
                    replay.response, status=replay.status, headers={"Idempotent-Replayed": "true"}
                )
        adopted = []
        try:
            for photo in photos.values():
                if await asyncio.to_thread(store.adopt_original, photo.temp, photo.sha256):
                    adopted.append(photo.sha256)
            async with conn.transaction():
                article_id = await articles.insert_article(
                    conn, _draft(submission, category.id, photos), token.id
                )
                # Everything the answer needs is known: no need to read the article back.
                path = f"/{category.slug}/{submission.slug}-{article_id}"
                body: dict[str, Any] = {
                    "id": article_id,
                    "status": "processing",
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
    # Enqueued only now that the article is committed: a worker never looks for a row that
    # is not there yet.
    await enqueue(PROCESS_ARTICLE, article_id)
    return web.json_response(
        body, status=202, headers={"Location": body["links"]["self"], "ETag": f'"{article_id}-1"'}
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


async def _category(conn: Conn, slug: str) -> Any:
    try:
        return await articles.category_by_slug(conn, slug)
    except articles.NotFound as err:
        raise invalid(
            [
                field_error(
                    "category", f"unknown category {slug!r}; GET /api/v1/categories lists them"
                )
            ]
        ) from err


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
    return ArticleDraft(
        slug=submission.slug,
        category_id=category_id,
        title=submission.title,
        summary=submission.summary,
        body_source=submission.body_source,
        body_format=submission.body_format,
        body_html=submission.body_html,
        author=submission.author,
        unit=submission.unit,
        published_at=submission.published_at,
        search_text=submission.search_text,
        gallery_title=submission.gallery_title,
        tags=submission.tags,
        images=tuple(images),
    )


async def get_article(request: web.Request) -> web.Response:
    token = await authenticate(request)
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, int(request.match_info["id"]), token)
    views = await request.app[redis_key].get(keys.article_views(article.id))
    return web.json_response(
        article_json(request, article, int(views or 0)), headers={"ETag": article.etag}
    )


async def patch_article(request: web.Request) -> web.Response:
    """Edit the text of an article; `If-Match` with the ETag from GET is required, so that an
    edit made from a stale copy is refused (412) instead of silently undoing another."""
    token = await authenticate(request)
    settings = request.app[settings_key]
    if_match = request.headers.get("If-Match")
    if not if_match:
        raise Problem(
            428,
            "Precondition required",
            "Send 'If-Match' with the ETag from"
            " GET /api/v1/articles/{id}, so that edits never overwrite each other.",
            kind="if-match-required",
        )
    changes = await read_json(request)
    if not isinstance(changes, dict):
        raise invalid([field_error("article", "must be a JSON object")])
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise invalid(
            [
                field_error(
                    name, "cannot be changed with PATCH; editable fields: " + ", ".join(EDITABLE)
                )
                for name in unknown
            ]
        )
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, int(request.match_info["id"]), token)
        _check_match(if_match, article.etag)
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
        category = await _category(conn, submission.category)
        draft = _draft(submission, category.id, {})
        if not await articles.update_article(conn, article.id, article.version, draft):
            raise Problem(
                412,
                "Precondition failed",
                "The article changed since you read it; GET it again and re-apply your edit.",
                kind="stale-etag",
            )
        updated = await articles.get_article(conn, article.id)
    await enqueue(ARTICLE_CHANGED, article.id, sorted({article.category.slug, category.slug}))
    views = await request.app[redis_key].get(keys.article_views(article.id))
    return web.json_response(
        article_json(request, updated, int(views or 0)), headers={"ETag": updated.etag}
    )


async def delete_article(request: web.Request) -> web.Response:
    """Unpublish: the page answers 410 Gone and the article leaves the feeds. The row and its
    photos are kept, so the history stays and an editor can see what was removed."""
    token = await authenticate(request)
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, int(request.match_info["id"]), token)
        if_match = request.headers.get("If-Match")
        if if_match:
            _check_match(if_match, article.etag)
        if article.status != "unpublished":
            await articles.mark(conn, article.id, "unpublished")
        updated = await articles.get_article(conn, article.id)
    await enqueue(ARTICLE_CHANGED, article.id, [article.category.slug])
    views = await request.app[redis_key].get(keys.article_views(article.id))
    return web.json_response(
        article_json(request, updated, int(views or 0)), headers={"ETag": updated.etag}
    )


def _check_match(if_match: str, etag: str) -> None:
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
