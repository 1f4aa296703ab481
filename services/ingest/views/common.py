"""What the API handlers share: reading JSON, sending tasks, shaping an article's JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from shared import articles
from shared.articles import Conn
from shared.models import Article
from shared.problems import Problem
from shared.tokens import Token
from shared.web import settings_key
from workers.app import app as celery

log = logging.getLogger(__name__)
SEND_TIMEOUT = 2.0  # seconds, as BANTIN_DEPENDENCY_TIMEOUT's default


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
    """Send a task after the caller's commit. Celery's client is synchronous, so its socket
    work runs in a thread; if the broker is down or does not answer within SEND_TIMEOUT of
    the thread's start (the client's own retries take far longer; a burst may first queue
    for a thread), the periodic sweep sends it later."""
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def send() -> None:
        loop.call_soon_threadsafe(started.set)
        celery.send_task(task, args=list(args))

    sending = asyncio.ensure_future(asyncio.to_thread(send))
    sending.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await started.wait()
        await asyncio.wait_for(asyncio.shield(sending), SEND_TIMEOUT)
    except Exception:
        log.warning("could not enqueue %s%s; the sweep will retry", task, args, exc_info=True)


async def load_for(conn: Conn, article_id: int, token: Token) -> Article:
    """The article, if this token may see it: admins see all, submitters their own."""
    try:
        article = await articles.get_article(conn, article_id)
    except articles.NotFound:
        article = None
    if article is None or (token.role != "admin" and article.submitted_by != token.id):
        raise Problem(
            404,
            "Not found",
            f"There is no article {article_id} for this token.",
            kind="article-not-found",
        )
    return article


def links(request: web.Request, article_id: int, path: str) -> dict[str, str]:
    """Absolute links to the article in the API and on the site. Behind a TLS-terminating
    proxy a request arrives as http: its forwarded scheme is trusted for the link (it only
    shapes a URL handed back; it grants nothing)."""
    origin = request.url.origin()
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    if proto in ("http", "https"):
        origin = origin.with_scheme(proto)
    site = request.app[settings_key].site_url()
    return {"self": f"{origin}/api/v1/articles/{article_id}", "page": site + path}


def article_json(request: web.Request, article: Article, views: int) -> dict[str, Any]:
    site = request.app[settings_key].site_url()
    return {
        "id": article.id,
        "uuid": str(article.uuid),
        "status": article.status,
        **({"error": article.error} if article.error else {}),
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
        "links": links(request, article.id, article.path),
    }
