"""Articles: submit (JSON, or multipart with photos), read, edit with If-Match, unpublish."""

from __future__ import annotations

import hashlib

from aiohttp import web

from services.ingest import idempotency, uploads
from services.ingest.auth import authenticate
from services.ingest.submit import edit_article, submit_article, unpublish_article
from services.ingest.views.common import article_json, load_for, read_json
from shared import keys
from shared.models import Article
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
        return web.json_response(
            accepted.body, status=accepted.status, headers={"Idempotent-Replayed": "true"}
        )
    body = accepted.body
    return web.json_response(
        body, status=202, headers={"Location": body["links"]["self"], "ETag": f'"{body["id"]}-1"'}
    )


async def get_article(request: web.Request) -> web.Response:
    token = await authenticate(request)
    async with request.app[pool_key].connection() as conn:
        article = await load_for(conn, int(request.match_info["id"]), token)
    return await _answer(request, article)


async def patch_article(request: web.Request) -> web.Response:
    """Edit the text of an article; `If-Match` with the ETag from GET is required."""
    token = await authenticate(request)
    changes = await read_json(request)
    updated = await edit_article(
        request, token, int(request.match_info["id"]), request.headers.get("If-Match"), changes
    )
    return await _answer(request, updated)


async def delete_article(request: web.Request) -> web.Response:
    """Unpublish: the page answers 410 Gone and the article leaves the feeds."""
    token = await authenticate(request)
    updated = await unpublish_article(
        request, token, int(request.match_info["id"]), request.headers.get("If-Match")
    )
    return await _answer(request, updated)


async def _answer(request: web.Request, article: Article) -> web.Response:
    views = await request.app[redis_key].get(keys.article_views(article.id))
    return web.json_response(
        article_json(request, article, int(views or 0)), headers={"ETag": article.etag}
    )
