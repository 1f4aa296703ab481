"""Handlers of the submitters' API. They check, call the data layer, and shape the answer;
domain errors from shared/ become problem+json here."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from services.ingest.auth import authenticate
from services.ingest.validation import check_article, check_category
from shared import articles, keys
from shared.models import Article
from shared.problems import Problem, field_error, invalid
from shared.web import pool_key, redis_key, settings_key
from workers.app import PROCESS_ARTICLE
from workers.app import app as celery

log = logging.getLogger(__name__)


async def list_categories(request: web.Request) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        found = await articles.list_categories(conn)
    return web.json_response([{"slug": c.slug, "name": c.name} for c in found])


async def create_category(request: web.Request) -> web.Response:
    await authenticate(request, role="admin")
    checked, errors = check_category(await read_json(request))
    if checked is None:
        raise invalid(errors)
    slug, name = checked
    async with request.app[pool_key].connection() as conn:
        try:
            category = await articles.create_category(conn, slug, name)
        except articles.Conflict as err:
            raise Problem(
                409, "Conflict", f"The category {slug!r} exists already.", kind="category-exists"
            ) from err
    return web.json_response(
        {"slug": category.slug, "name": category.name},
        status=201,
        headers={"Location": f"/api/v1/categories/{category.slug}"},
    )


async def create_article(request: web.Request) -> web.Response:
    token = await authenticate(request)
    settings = request.app[settings_key]
    submission, errors = check_article(await read_json(request), max_photos=settings.max_photos)
    if submission is None:
        raise invalid(errors)
    if submission.images:
        raise invalid(
            [
                field_error(
                    "images",
                    "photos are sent as multipart/form-data, one part"
                    " per photo, with the JSON in a part named 'article'",
                )
            ]
        )
    async with request.app[pool_key].connection() as conn:
        try:
            category = await articles.category_by_slug(conn, submission.category)
        except articles.NotFound as err:
            raise invalid(
                [
                    field_error(
                        "category",
                        f"unknown category {submission.category!r};"
                        " GET /api/v1/categories lists them",
                    )
                ]
            ) from err
        async with conn.transaction():
            article_id = await articles.insert_article(
                conn,
                articles.ArticleDraft(
                    slug=submission.slug,
                    category_id=category.id,
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
                ),
                token.id,
            )
        # Enqueued only now that the article is committed: a worker never looks for a row
        # that is not there yet. If the broker is down, the periodic sweep sends it later.
        await enqueue(PROCESS_ARTICLE, article_id)
        article = await articles.get_article(conn, article_id)
    body: dict[str, Any] = {
        "id": article_id,
        "status": article.status,
        "links": links(request, article),
    }
    return web.json_response(
        body, status=202, headers={"Location": body["links"]["self"], "ETag": article.etag}
    )


async def get_article(request: web.Request) -> web.Response:
    await authenticate(request)
    article_id = int(request.match_info["id"])
    async with request.app[pool_key].connection() as conn:
        try:
            article = await articles.get_article(conn, article_id)
        except articles.NotFound as err:
            raise Problem(
                404, "Not found", f"There is no article {article_id}.", kind="article-not-found"
            ) from err
    views = await request.app[redis_key].get(keys.article_views(article_id))
    return web.json_response(
        article_json(request, article, int(views or 0)), headers={"ETag": article.etag}
    )


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "Unsupported media type",
            f"Send JSON with 'Content-Type: application/json' (got {request.content_type!r}).",
        )
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Problem(
            400, "Malformed JSON", f"The body is not valid JSON: {err}.", kind="malformed-json"
        ) from err


async def enqueue(task: str, *args: Any) -> None:
    try:
        # Celery's client is synchronous; keep its socket work off the event loop.
        await asyncio.to_thread(celery.send_task, task, args=list(args))
    except Exception:
        log.warning("could not enqueue %s%s; the sweep will retry", task, args, exc_info=True)


def links(request: web.Request, article: Article) -> dict[str, str]:
    site = request.app[settings_key].site_url()
    return {
        "self": f"{request.url.origin()}/api/v1/articles/{article.id}",
        "page": site + article.path,
    }


def article_json(request: web.Request, article: Article, views: int) -> dict[str, Any]:
    site = request.app[settings_key].site_url()
    return {
        "id": article.id,
        "uuid": str(article.uuid),
        "status": article.status,
        "title": article.title,
        "category": article.category.slug,
        "summary": article.summary,
        "body": article.body_html,
        "body_format": article.body_format,
        "author": article.author,
        "unit": article.unit,
        "tags": list(article.tags),
        "gallery_title": article.gallery_title,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "created_at": article.created_at.isoformat(),
        "updated_at": article.updated_at.isoformat(),
        "version": article.version,
        "views": views,
        "images": [
            {
                "part": image.part,
                "caption": image.caption,
                "role": image.role,
                "width": image.width,
                "height": image.height,
                **({"error": image.error} if image.error else {}),
                "renditions": [
                    {"url": site + r.path, "width": r.width, "height": r.height, "format": r.format}
                    for r in image.renditions
                ],
            }
            for image in article.images
        ],
        "links": links(request, article),
    }
