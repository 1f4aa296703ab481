"""Articles: submit (JSON, or multipart with photos; one or a batch), list, read, edit with
If-Match, unpublish."""

from __future__ import annotations

import hashlib

from aiohttp import web
from yarl import URL

from services.ingest import idempotency, uploads
from services.ingest.auth import authenticate
from services.ingest.submit import (
    batch_bytes,
    edit_article,
    submit_article,
    submit_batch,
    unpublish_article,
)
from services.ingest.views.common import (
    answer,
    article_item,
    article_json,
    if_match,
    load_for,
    origin,
    read_json,
)
from shared import articles, keys, shapes, tokens
from shared.models import Article
from shared.problems import invalid
from shared.web import media_key, pool_key, redis_key, settings_key


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
        accepted = await submit_article(request, token, key, data, photos, fingerprint)
    finally:
        if upload is not None:
            upload.discard()  # whatever was not adopted into the store
    if accepted.replayed:
        return answer(
            "Accepted",
            accepted.body,
            status=accepted.status,
            headers={"Idempotent-Replayed": "true"},
        )
    body = accepted.body
    return answer(
        "Accepted",
        body,
        status=202,
        headers={"Location": body["links"]["self"], "ETag": f'"{body["id"]}-1"'},
    )


async def create_batch(request: web.Request) -> web.Response:
    """Up to BATCH_LIMIT JSON articles, written in one transaction; one result per article,
    in order: accepted ones as POST /api/v1/articles answers, refused ones as problems."""
    token = await authenticate(request)
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    body = request.clone(client_max_size=batch_bytes(request.app[settings_key]))
    items, errors = shapes.check_batch(await read_json(body))
    if items is None:
        raise invalid(errors, "batch")
    fingerprint = hashlib.sha256(await body.read()).hexdigest()
    accepted = await submit_batch(request, token, key, items, fingerprint)
    replayed = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return answer("BatchResults", accepted.body, headers=replayed)


async def list_articles(request: web.Request) -> web.Response:
    """Newest first, a page at a time: `next` carries an opaque keyset cursor (the last id
    shown), so a page costs the same however deep it is and no article is shown twice when
    new ones arrive in between."""
    token = await authenticate(request)
    query, errors = shapes.check_listing(request.query)
    if query is None:
        raise invalid(errors, "query")
    async with request.app[pool_key].connection() as conn:
        found = await articles.list_articles(
            conn,
            submitted_by=await tokens.visible_to(conn, token),
            status=query.status,
            category=query.category or None,
            title=query.q or None,
            before=None if query.cursor is None else min(int(query.cursor, 36), 2**63 - 1),
            limit=query.limit + 1,
        )
    page, more = found[: query.limit], len(found) > query.limit
    views = await _views(request, page)
    body: shapes.ArticleList = {
        "items": [article_item(request, a, v) for a, v in zip(page, views, strict=True)],
        "next": str(_next_url(request, page[-1].id)) if more and page else None,
    }
    return answer("ArticleList", body)


async def get_article(request: web.Request) -> web.Response:
    token = await authenticate(request)
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, int(request.match_info["id"]), token)
    return await _answer(request, article)


async def patch_article(request: web.Request) -> web.Response:
    """Edit the text of an article; `If-Match` with the ETag from GET is required."""
    token = await authenticate(request)
    match = if_match(request)
    changes = await read_json(request)
    updated = await edit_article(request, token, int(request.match_info["id"]), match, changes)
    return await _answer(request, updated)


async def delete_article(request: web.Request) -> web.Response:
    """Unpublish: the page answers 410 Gone and the article leaves the feeds."""
    token = await authenticate(request)
    updated = await unpublish_article(
        request, token, int(request.match_info["id"]), if_match(request)
    )
    return await _answer(request, updated)


async def _answer(request: web.Request, article: Article) -> web.Response:
    (views,) = await _views(request, [article])
    return answer("Article", article_json(request, article, views), headers={"ETag": article.etag})


async def _views(request: web.Request, found: list[Article]) -> list[int]:
    if not found:
        return []
    counts = await request.app[redis_key].mget([keys.article_views(a.id) for a in found])
    return [int(n or 0) for n in counts]


def _next_url(request: web.Request, last_id: int) -> URL:
    cursor = _base36(last_id)
    return origin(request).join(request.rel_url).update_query(cursor=cursor)


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, d = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if not n:
            return digits
