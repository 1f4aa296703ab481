"""The site, for admins: categories (create, rename, reorder) and the sidebar's link blocks.
Categories are created with the API's own check; link blocks are saved through the API's
`save_site`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.ingest.desk import queries
from services.ingest.desk.web import form, page, render, require
from services.ingest.views.common import enqueue
from services.ingest.views.site import save_site
from shared import articles, keys, site
from shared.problems import Problem
from shared.shapes import check_category
from shared.tasks import SITE_CHANGED
from shared.text import clean_text
from shared.web import pool_key, redis_key

ADMIN = ("admin",)
CATEGORY_ERRORS = {
    "name": "Hãy nhập tên chuyên mục (tối đa 100 ký tự).",
    "slug": "Đường dẫn gồm chữ thường không dấu và dấu gạch ngang, ví dụ tin-hoat-dong;"
    " một số tên dành riêng cho trang web.",
}


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    notice: str = "",
    error: str = "",
    blocks_text: list[tuple[str, str]] | None = None,
    blocks_error: str = "",
) -> web.Response:
    desk = await require(request, roles=ADMIN)
    async with request.app[pool_key].connection() as conn:
        categories = await articles.list_categories(conn)
        blocks, version = await site.link_blocks(conn)
    if blocks_text is None:
        blocks_text = [
            (b.title, "\n".join(f"{k.title} | {k.url}" for k in b.links)) for b in blocks
        ]
    return render(
        request,
        "site.html",
        status=status,
        desk=desk,
        categories=categories,
        blocks=[*blocks_text, ("", "")],
        version=version,
        notice=notice,
        error=error,
        blocks_error=blocks_error,
    )


@page
async def site_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _changed(request: web.Request, slugs: list[str]) -> None:
    """Every page's menu lists the categories: cached pages go stale, feeds follow."""
    await request.app[redis_key].incr(keys.SITE_VERSION)
    await enqueue(request.app, SITE_CHANGED, slugs)


@page
async def create_category(request: web.Request) -> web.StreamResponse:
    desk = await require(request, roles=ADMIN)
    data = await form(request, desk)
    given: dict[str, Any] = {"name": data.get("name", "")}
    if data.get("slug", "").strip():
        given["slug"] = data["slug"].strip()
    checked, errors = check_category(given)
    if checked is None:
        message = " ".join(CATEGORY_ERRORS.get(e["field"], e["message"]) for e in errors)
        return await _page(request, status=422, error=message)
    slug, name = checked
    async with request.app[pool_key].connection() as conn:
        try:
            await articles.create_category(conn, slug, name)
        except articles.Conflict:
            return await _page(request, status=409, error=f"Đã có chuyên mục “{slug}”.")
    await _changed(request, [slug])
    return await _page(request, notice=f"Đã tạo chuyên mục “{name}”.")


@page
async def rename_category(request: web.Request) -> web.StreamResponse:
    desk = await require(request, roles=ADMIN)
    data = await form(request, desk)
    name = clean_text(data.get("name", ""))
    if not name or len(name) > 100:
        return await _page(request, status=422, error=CATEGORY_ERRORS["name"])
    async with request.app[pool_key].connection() as conn:
        await queries.rename_category(conn, data.get("slug", ""), name)
    await _changed(request, [data.get("slug", "")])
    return await _page(request, notice=f"Đã đổi tên thành “{name}”.")


@page
async def move_category(request: web.Request) -> web.StreamResponse:
    desk = await require(request, roles=ADMIN)
    data = await form(request, desk)
    async with request.app[pool_key].connection() as conn:
        await queries.move_category(conn, data.get("slug", ""), -1 if data.get("to") == "up" else 1)
    await _changed(request, [])
    raise web.HTTPSeeOther("/desk/trang-web/")


@page
async def save_links(request: web.Request) -> web.StreamResponse:
    """Blocks as the form sends them: a title, then one link a line, "Title | URL"."""
    desk = await require(request, roles=ADMIN)
    await form(request, desk)  # the CSRF check
    posted = await request.post()
    titles = [v for v in posted.getall("block_title", []) if isinstance(v, str)]
    texts = [v for v in posted.getall("block_links", []) if isinstance(v, str)]
    kept = list(zip(titles, texts, strict=False))
    blocks: list[dict[str, Any]] = []
    for title, text in kept:
        if not title.strip() and not text.strip():
            continue
        links = []
        for line in text.splitlines():
            if not line.strip():
                continue
            label, bar, url = line.rpartition("|")
            if not bar:
                return await _page(
                    request,
                    status=422,
                    blocks_text=kept,
                    blocks_error=f"Dòng “{line.strip()}”: hãy viết theo mẫu Tên trang | https://…",
                )
            links.append({"title": label.strip(), "url": url.strip()})
        blocks.append({"title": title.strip(), "links": links})
    version = str(posted.get("version", ""))
    try:
        await save_site(
            request,
            desk.token.id,
            {"link_blocks": blocks},
            int(version) if version.isdigit() and len(version) < 10 else None,
        )
    except Problem as problem:
        message = (
            "Người khác vừa lưu các khối liên kết; hãy tải lại trang rồi sửa lại."
            if problem.status == 412
            else "Chưa lưu được: mỗi khối cần tiêu đề; mỗi liên kết cần tên và địa chỉ đầy đủ,"
            " bắt đầu bằng https:// (tối đa 10 khối, mỗi khối 50 liên kết)."
        )
        return await _page(request, status=problem.status, blocks_text=kept, blocks_error=message)
    return await _page(request, notice="Đã lưu các khối liên kết.")
