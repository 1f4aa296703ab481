"""The desk's pages: sign-in, the list of articles, writing and editing, an article's page,
unpublishing, and review. Every change goes through services/ingest/submit.py (or review.py),
the very functions the API calls."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable
from typing import Any, NoReturn

from aiohttp import web

from services.ingest import submit, uploads
from services.ingest.desk import forms, labels
from services.ingest.desk.web import (
    COOKIE,
    CSRF_FIELD,
    SIGN_IN_COOKIE,
    Desk,
    DeskError,
    check_csrf,
    count_failure,
    current,
    idle_seconds,
    page,
    posted,
    render,
    require,
    set_cookie,
    too_many,
    wait_before_sign_in,
)
from services.ingest.views import review
from services.ingest.views.common import links, load_for
from shared import accounts, articles, history, keys, sessions, tokens
from shared.models import REVIEW_STATUSES, STATUSES, Article
from shared.problems import Problem
from shared.tokens import EDITORS
from shared.web import media_key, pool_key, redis_key, settings_key

PAGE = 50  # articles a page of the list

# --- signing in and out --------------------------------------------------------------------------


@page
async def home(request: web.Request) -> web.StreamResponse:
    if await current(request) is not None:
        raise web.HTTPSeeOther("/desk/bai-viet/")
    return _sign_in_page(request)


def _sign_in_page(
    request: web.Request, *, status: int = 200, error: str = "", username: str = ""
) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status=status,
        desk=None,
        csrf=token,
        error=error,
        username=username,
    )
    set_cookie(request, response, SIGN_IN_COOKIE, token, "Strict")
    return response


@page
async def sign_in(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    check_csrf(request.cookies.get(SIGN_IN_COOKIE, ""), _str(data.get(CSRF_FIELD)))
    username = _str(data.get("username")).strip().lower()[:100]
    password = _str(data.get("password"))
    wait = await wait_before_sign_in(request, username)
    if wait:
        raise too_many(wait)
    async with request.app[pool_key].connection() as conn:
        account = await accounts.verify(conn, username, password)
    if account is None:
        wait = await count_failure(request, username)
        if wait:
            raise too_many(wait)
        return _sign_in_page(
            request,
            status=401,
            error="Tên đăng nhập hoặc mật khẩu chưa đúng.",
            username=username,
        )
    # A fresh session id at every sign-in (no fixation), and the old one ended.
    old = request.cookies.get(COOKIE)
    if old:
        await sessions.end(request.app[redis_key], old)
    session = await sessions.start(request.app[redis_key], account.id, idle_seconds(request))
    response = web.HTTPSeeOther("/desk/bai-viet/")
    set_cookie(request, response, COOKIE, session.sid, "Lax")
    response.del_cookie(SIGN_IN_COOKIE, path="/desk/")
    raise response


@page
async def sign_out(request: web.Request) -> web.StreamResponse:
    desk, _ = await posted(request)
    await sessions.end(request.app[redis_key], desk.session.sid)
    response = web.HTTPSeeOther("/desk/")
    response.del_cookie(COOKIE, path="/desk/")
    raise response


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- the list ------------------------------------------------------------------------------------


@page
async def article_list(request: web.Request) -> web.StreamResponse:
    desk = await require(request)
    query = request.query
    status = query.get("status", "") if query.get("status", "") in STATUSES else ""
    category = query.get("category", "")[:80]
    q = query.get("q", "")[:200]
    before = query.get("before", "")
    async with request.app[pool_key].connection() as conn:
        # The API's listing (GET /api/v1/articles): one query, one rule of who sees what.
        rows = await articles.list_articles(
            conn,
            submitted_by=await tokens.visible_to(conn, desk.token),
            status=status or None,
            category=category or None,
            title=q or None,
            before=int(before) if before.isdigit() and len(before) < 19 else None,
            limit=PAGE + 1,
        )
        categories = await articles.list_categories(conn)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    views = await _views(request, [row.id for row in rows])
    site = request.app[settings_key].site_url()
    return render(
        request,
        "list.html",
        desk=desk,
        rows=rows,
        views=views,
        site=site,
        categories=categories,
        filter_status=status,
        category=category,
        q=q,
        next_before=rows[-1].id if more and rows else None,
        **_common(request),
    )


async def _views(request: web.Request, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    counts = await request.app[redis_key].mget([keys.article_views(i) for i in ids])
    return {i: int(c or 0) for i, c in zip(ids, counts, strict=True)}


def _common(request: web.Request) -> dict[str, Any]:
    settings = request.app[settings_key]
    zone = settings.zone
    return {
        "labels": labels,
        "review_on": settings.review,
        "review_statuses": REVIEW_STATUSES,
        "when": lambda value: labels.when(value, zone),
    }


# --- writing -------------------------------------------------------------------------------------


@page
async def new_form(request: web.Request) -> web.StreamResponse:
    desk = await require(request)
    return await _article_form(request, desk, forms.ArticleForm())


async def _article_form(
    request: web.Request,
    desk: Desk,
    article_form: forms.ArticleForm,
    *,
    status: int = 200,
    article: Article | None = None,
    etag: str = "",
    saved: forms.ArticleForm | None = None,
    saved_html: str = "",
    base: str = "",
    shown_time: str = "",
) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        categories = await articles.list_categories(conn)
    if article is not None and article.category.slug not in {c.slug for c in categories}:
        categories.append(article.category)  # retired: its articles may stay where they are
    return render(
        request,
        "edit.html",
        status=status,
        desk=desk,
        form=article_form,
        article=article,
        etag=etag,
        saved=saved,
        saved_html=saved_html,  # sanitized by the API (shared.html), photos from the desk
        base=base,
        shown_time=shown_time,
        categories=categories,
        roles=forms.PHOTO_ROLES,
        **_common(request),
    )


@page
async def create(request: web.Request) -> web.StreamResponse:
    """The form posts multipart/form-data; photos stream to the media store as the API's do,
    and the article goes through submit_article, as the API's does."""
    desk = await require(request)
    settings = request.app[settings_key]
    if not request.content_type.startswith("multipart/"):
        raise DeskError(400, "Biểu mẫu gửi lên không đúng dạng; hãy tải lại trang.")

    def guard(upload: uploads.Form) -> None:
        given = next((p.value for p in upload.parts if p.name == CSRF_FIELD), None)
        check_csrf(desk.csrf, given)

    try:
        upload = await uploads.read_form(
            request, settings, request.app[media_key], files="photo", guard=guard
        )
    except Problem as problem:
        article_form = forms.ArticleForm()
        article_form.errors["form"] = forms.photo_message(problem)
        return await _refused(request, desk, article_form, problem.status)
    try:
        guard(upload)
        article_form = forms.from_parts(upload)
        if any(row.error for row in article_form.rows):
            return await _refused(request, desk, article_form, 422)
        data = article_form.article(settings.zone)
        digest = hashlib.sha256(repr(sorted(upload.photos())).encode())
        try:
            accepted = await submit.submit_article(
                request, desk.token, None, data, upload.photos(), digest.hexdigest()
            )
        except Problem as problem:
            forms.apply_errors(article_form, problem)
            return await _refused(request, desk, article_form, problem.status)
    finally:
        upload.discard()  # whatever the store did not adopt
    target = f"/desk/bai-viet/{accepted.body['id']}"
    if _wants_json(request):
        return web.json_response({"location": target}, status=201)
    raise web.HTTPSeeOther(target)


def _wants_json(request: web.Request) -> bool:
    """The form's script (desk.js) posts with XMLHttpRequest and reads JSON: it keeps the page,
    the typed text and the chosen photos, and shows each message beside its field."""
    return request.headers.get("X-Desk-Script") == "1"


async def _refused(
    request: web.Request, desk: Desk, article_form: forms.ArticleForm, status: int, **more: Any
) -> web.Response:
    if _wants_json(request):
        return web.json_response(
            {
                "errors": article_form.errors,
                "photos": [row.error for row in article_form.rows],
            },
            status=status,
        )
    return await _article_form(request, desk, article_form, status=status, **more)


# --- an article ----------------------------------------------------------------------------------


async def _load(request: web.Request, desk: Desk) -> Article:
    article_id = request.match_info["id"]
    async with request.app[pool_key].connection() as conn:
        try:
            return await load_for(conn, int(article_id), desk.token)
        except Problem as err:
            raise DeskError(404, "Không có bài viết này, hoặc bạn không được xem.") from err


@page
async def article_page(request: web.Request) -> web.StreamResponse:
    desk = await require(request)
    article = await _load(request, desk)
    async with request.app[pool_key].connection() as conn:
        events = await history.events(conn, article.id)
    views = await _views(request, [article.id])
    note = next((e.note for e in reversed(events) if e.action == "returned"), "")
    return render(
        request,
        "article.html",
        desk=desk,
        article=article,
        events=events,
        views=views[article.id],
        note=note,
        public=links(request, article.id, article.path)["page"],
        site=request.app[settings_key].site_url(),
        may_review=desk.account.role in EDITORS and article.status == "pending",
        **_common(request),
    )


def with_photos(article: Article) -> str:
    """The article's sanitized body with its photos shown from the desk (cid: is no URL)."""

    def shown(match: re.Match[str]) -> str:
        tag = match.group(0).replace(
            f'src="cid:{match.group(1)}"', f'src="/desk/bai-viet/{article.id}/anh/{match.group(1)}"'
        )
        return tag if " alt=" in tag else tag.replace("<img", f'<img alt="Ảnh {match.group(1)}"', 1)

    return CID.sub(shown, article.body_html)


CID = re.compile(r'<img\b[^>]*?\bsrc="cid:([A-Za-z0-9][A-Za-z0-9._-]{0,99})"[^>]*>')
FORMATS = {f: f"image/{f}" for f in ("jpeg", "png", "webp", "gif", "avif")}


@page
async def original(request: web.Request) -> web.StreamResponse:
    """A photo as it was sent, for whoever may see its article: an editor reviews a pending
    article's photos before any rendition exists."""
    desk = await require(request)
    article = await _load(request, desk)
    async with request.app[pool_key].connection() as conn:
        cur = await conn.execute(
            "SELECT sha256, format FROM images WHERE article_id = %s AND part = %s",
            (article.id, request.match_info["part"]),
        )
        row = await cur.fetchone()
    path = request.app[media_key].original(row["sha256"]) if row else None
    if row is None or path is None or not path.exists():
        raise DeskError(404, "Không có ảnh này.")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": FORMATS.get(row["format"], "application/octet-stream"),
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def status(request: web.Request) -> web.StreamResponse:
    """What the article page's script polls: the status, and the public link once live."""
    desk = await current(request)
    if desk is None:
        return web.json_response({"error": "signed-out"}, status=401)
    try:
        article = await _load(request, desk)
    except DeskError:
        return web.json_response({"error": "not-found"}, status=404)
    return web.json_response(
        {
            "status": article.status,
            "label": labels.STATUS[article.status],
            "settled": article.status in labels.SETTLED,
            "error": article.error,
            "page": links(request, article.id, article.path)["page"]
            if article.status == "published"
            else None,
        },
        headers={"Cache-Control": "no-store"},
    )


@page
async def edit_form(request: web.Request) -> web.StreamResponse:
    desk = await require(request)
    article = await _load(request, desk)
    async with request.app[pool_key].connection() as conn:
        body = await articles.body_source(conn, article.id)
    zone = request.app[settings_key].zone
    shown = forms.from_article(article, body, zone)
    return await _article_form(
        request,
        desk,
        shown,
        article=article,
        etag=article.etag,
        base=forms.digest(shown),
        shown_time=shown.values["published_at"],
    )


@page
async def edit(request: web.Request) -> web.StreamResponse:
    desk, data = await posted(request)
    article = await _load(request, desk)
    zone = request.app[settings_key].zone
    article_form = forms.from_post(data)
    changes = forms.edit_changes(article_form, data.get("published_at_was", ""), zone)
    etag = data.get("version")
    for _ in range(3):
        async with request.app[pool_key].connection() as conn:
            body = await articles.body_source(conn, article.id)
        saved = forms.from_article(article, body, zone)
        if etag != article.etag and data.get("base") == forms.digest(saved):
            etag = article.etag  # only its status moved (a worker published it): no collision
        try:
            await submit.edit_article(request, desk.token, article.id, etag, changes)
        except Problem as problem:
            if problem.kind == "stale-etag" and etag == article.etag:
                article = await _load(request, desk)  # it moved again in between: look again
                continue
            refused = problem
            break
        raise web.HTTPSeeOther(f"/desk/bai-viet/{article.id}")
    else:
        refused = Problem(412, "Precondition failed", kind="stale-etag")
    if refused.kind != "stale-etag":
        forms.apply_errors(article_form, refused)
        return await _article_form(
            request,
            desk,
            article_form,
            status=refused.status,
            article=article,
            etag=data.get("version", ""),
            base=data.get("base", ""),
            shown_time=data.get("published_at_was", ""),
        )
    # Someone saved in between: show both versions; saving again is a choice made knowing.
    article_form.errors["form"] = (
        "Bài viết vừa được người khác lưu trong lúc bạn sửa. Bản của bạn chưa được lưu:"
        " hãy so sánh với bản đã lưu bên dưới, rồi bấm Lưu nếu vẫn muốn thay bằng bản của bạn."
    )
    return await _article_form(
        request,
        desk,
        article_form,
        status=409,
        article=article,
        etag=article.etag,
        saved=saved,
        saved_html=with_photos(article),
        base=forms.digest(saved),
        shown_time=saved.values["published_at"],
    )


@page
async def unpublish_form(request: web.Request) -> web.StreamResponse:
    desk = await require(request)
    article = await _load(request, desk)
    return render(request, "unpublish.html", desk=desk, article=article, **_common(request))


@page
async def unpublish(request: web.Request) -> web.StreamResponse:
    desk, _ = await posted(request)
    article = await _load(request, desk)
    await submit.unpublish_article(request, desk.token, article.id, None)
    raise web.HTTPSeeOther(f"/desk/bai-viet/{article.id}")


# --- review --------------------------------------------------------------------------------------


@page
async def approve(request: web.Request) -> web.StreamResponse:
    desk, _ = await posted(request, roles=EDITORS)
    article = await _load(request, desk)
    await _reviewed(article, review.approve(request, desk.token, article.id))


@page
async def send_back(request: web.Request) -> web.StreamResponse:
    desk, data = await posted(request, roles=EDITORS)
    article = await _load(request, desk)
    note = data.get("note", "")
    if not note.strip():
        raise DeskError(422, "Hãy ghi rõ cần sửa gì trước khi trả lại bài.")
    await _reviewed(article, review.send_back(request, desk.token, article.id, note))


async def _reviewed(article: Article, decision: Awaitable[Article]) -> NoReturn:
    """The article's page again once `decision` is made; a 409 if no longer pending."""
    try:
        await decision
    except Problem as err:
        raise DeskError(409, "Bài này không còn chờ duyệt.") from err
    raise web.HTTPSeeOther(f"/desk/bai-viet/{article.id}")
