"""What the API handlers share: reading JSON, answering through the declared shapes, sending
tasks, shaping an article's JSON, reading If-Match."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from shared import articles, shapes, tokens
from shared.articles import Conn
from shared.models import Article
from shared.problems import Problem, loads
from shared.tasks import TaskSender
from shared.tokens import Token
from shared.web import settings_key


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "Unsupported media type",
            f"Send JSON with 'Content-Type: application/json' (got {request.content_type!r}).",
        )
    return loads(await request.read())


def answer(
    shape: str, value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`value` as JSON, written through its declaration in shared/shapes.py."""
    return web.Response(
        body=shapes.encode(shape, value),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def if_match(request: web.Request) -> str | None:
    """The request's If-Match as aiohttp parses it, written back as a list of quoted ETags;
    None when there is none. A header that names no ETag (empty, or unquoted like `24-2`) is
    given but malformed: refused (400) with what to send instead, never taken as missing."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    tags = request.if_match or ()
    if not tags:
        bare = raw.strip()
        how = (
            f'ETags are quoted: send If-Match: "{bare}"'
            if bare and '"' not in bare
            else 'send the ETag that GET gave, quoted, like If-Match: "24-2"'
        )
        raise Problem(400, "Malformed If-Match", f"If-Match {raw!r} names no ETag; {how}.")
    return ", ".join(
        "*" if t.value == "*" else ('W/"' if t.is_weak else '"') + t.value + '"' for t in tags
    )


tasks_key = web.AppKey("tasks", TaskSender)


async def enqueue(app: web.Application, task: str, *args: Any) -> None:
    """Send a task after the caller's commit; if the broker is down, beat's sweep sends it
    later (see `TaskSender.send`)."""
    await app[tasks_key].send(task, *args)


async def load_for(conn: Conn, article_id: int, token: Token) -> Article:
    """The article, if this token may see it: editors and admins see all, submitters their
    own (see `tokens.may_see`)."""
    try:
        article = await articles.get_article(conn, article_id)
    except articles.NotFound:
        article = None
    if article is None or not await tokens.may_see(conn, token, article.submitted_by):
        raise Problem(
            404,
            "Not found",
            f"There is no article {article_id} for this token.",
            kind="article-not-found",
        )
    return article


def origin(request: web.Request) -> URL:
    """The API's origin for links handed back. Behind a TLS-terminating proxy a request
    arrives as http: its forwarded scheme is trusted for the link (it only shapes a URL handed
    back; it grants nothing)."""
    found = request.url.origin()
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    return found.with_scheme(proto) if proto in ("http", "https") else found


def links(request: web.Request, article_id: int, path: str) -> shapes.Links:
    """Absolute links to the article in the API and on the site."""
    site = request.app[settings_key].site_url()
    return {"self": f"{origin(request)}/api/v1/articles/{article_id}", "page": site + path}


def article_json(request: web.Request, article: Article, views: int) -> shapes.Article:
    """The article as GET /api/v1/articles/{id} gives it."""
    return {**article_item(request, article, views), "body": article.body_html}


def article_item(request: web.Request, article: Article, views: int) -> shapes.ArticleItem:
    """The article as the listing gives it: everything but the body."""
    site = request.app[settings_key].site_url()
    item: shapes.ArticleItem = {
        "id": article.id,
        "uuid": str(article.uuid),
        "status": article.status,
        "title": article.title,
        "category": article.category.slug,
        "summary": article.summary,
        "body_format": article.body_format,  # type: ignore[typeddict-item]
        "author": article.author,
        "unit": article.unit,
        "tags": list(article.tags),
        "gallery_title": article.gallery_title,
        "published_at": article.published_at,
        "created_at": article.created_at,
        "updated_at": article.updated_at,
        "version": article.version,
        "views": views,
        "images": [
            {
                "part": image.part,
                "caption": image.caption,
                "role": image.role,  # type: ignore[typeddict-item]
                "width": image.width,
                "height": image.height,
                **({"error": image.error} if image.error else {}),  # type: ignore[typeddict-item]
                "renditions": [
                    {"url": site + r.path, "width": r.width, "height": r.height, "format": r.format}  # type: ignore[typeddict-item]
                    for r in image.renditions
                ],
            }
            for image in article.images
        ],
        "links": links(request, article.id, article.path),
    }
    if article.error:
        item["error"] = article.error
    return item
