"""Review (BANTIN_REVIEW=on): submitters' articles wait as `pending` until an editor approves
them (they then publish, or are scheduled) or returns them with a note (`returned`; the
submitter edits, and the edit sends it back for review). Editors' and admins' own articles
publish directly. The hooks here are what submit.py calls; the views are the API's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.ingest.auth import authenticate
from services.ingest.views.common import article_json, enqueue, load_for, read_json
from shared import articles, history, keys
from shared.articles import Conn
from shared.models import Article
from shared.problems import Problem, field_error, invalid
from shared.settings import Settings
from shared.tasks import PROCESS_ARTICLE
from shared.tokens import EDITORS, Token
from shared.web import pool_key, redis_key

NOTE_LIMIT = 2000


def holds(settings: Settings, token: Token) -> bool:
    """Whether this sender's new articles wait for an editor."""
    return settings.review and token.role not in EDITORS


async def on_submit(conn: Conn, settings: Settings, token: Token, article_id: int) -> bool:
    """In the submission's transaction: record it, and hold it for review when it must wait.
    True when held (nothing to send to the workers yet). A batch decides the same with
    `holds` (shared/bulk.py writes its statuses directly)."""
    await history.record(conn, article_id, token.id, "submitted")
    if not holds(settings, token):
        return False
    await articles.mark(conn, article_id, "pending", expect=("processing",))
    return True


async def on_edit(conn: Conn, settings: Settings, token: Token, article: Article) -> bool:
    """After an edit: recorded; a returned article goes back for review (or, when its sender
    may publish, straight to the workers). True when it must be processed now."""
    if article.status != "returned":
        await history.record(conn, article.id, token.id, "edited")
        return False
    await history.record(conn, article.id, token.id, "resubmitted")
    held = holds(settings, token)
    await articles.mark(conn, article.id, "pending" if held else "processing", expect=("returned",))
    return not held


async def on_unpublish(conn: Conn, token: Token, article_id: int) -> None:
    await history.record(conn, article_id, token.id, "unpublished")


async def approve(request: web.Request, token: Token, article_id: int) -> Article:
    """The article goes to the workers: it publishes, or is scheduled for its time."""
    updated = await _decide(request, token, article_id, "processing", "approved")
    await enqueue(request.app, PROCESS_ARTICLE, updated.id)
    return updated


async def send_back(request: web.Request, token: Token, article_id: int, note: Any) -> Article:
    """Returned to its submitter with a note saying what to change."""
    if not isinstance(note, str) or not note.strip():
        raise invalid([field_error("note", "is required: say what the submitter should change")])
    if len(note) > NOTE_LIMIT:
        raise invalid([field_error("note", f"is too long (at most {NOTE_LIMIT} characters)")])
    return await _decide(request, token, article_id, "returned", "returned", note.strip())


async def _decide(
    request: web.Request, token: Token, article_id: int, status: str, action: str, note: str = ""
) -> Article:
    """A pending article reviewed: its new `status` and its history's `action`, at once."""
    async with request.app[pool_key].connection() as conn:
        article = await _reviewable(conn, token, article_id)
        async with conn.transaction():
            if not await articles.mark(conn, article.id, status, expect=("pending",)):
                raise _not_pending(article.id)
            await history.record(conn, article.id, token.id, action, note)
        return await articles.get_article(conn, article.id)


async def _reviewable(conn: Conn, token: Token, article_id: int) -> Article:
    if token.role not in EDITORS:
        raise Problem(
            403,
            "Forbidden",
            f"Only editors and admins review articles; this token's role is {token.role!r}.",
        )
    article = await load_for(conn, article_id, token)
    if article.status != "pending":
        raise _not_pending(article.id)
    return article


def _not_pending(article_id: int) -> Problem:
    return Problem(
        409,
        "Not waiting for review",
        f"Article {article_id} is not pending review (only pending articles are approved or"
        " returned).",
        kind="not-pending",
    )


# --- the API's views -----------------------------------------------------------------------------


async def approve_view(request: web.Request) -> web.Response:
    token = await authenticate(request)
    article = await approve(request, token, int(request.match_info["id"]))
    return await _answer(request, article)


async def return_view(request: web.Request) -> web.Response:
    token = await authenticate(request)
    data = await read_json(request)
    note = data.get("note") if isinstance(data, dict) else None
    article = await send_back(request, token, int(request.match_info["id"]), note)
    return await _answer(request, article)


async def _answer(request: web.Request, article: Article) -> web.Response:
    views = await request.app[redis_key].get(keys.article_views(article.id))
    return web.json_response(
        article_json(request, article, int(views or 0)), headers={"ETag": article.etag}
    )


def setup(app: web.Application, article: str) -> None:
    app.router.add_post(article + "/approve", approve_view)
    app.router.add_post(article + "/return", return_view)
