"""The site, for admins: categories (create, rename, reorder, retire with a redirect, bring
back, delete an empty one) and the sidebar's link blocks. Every change goes through the API's
own functions (services/ingest/views/categories.py, `save_site`), so the desk and the API keep
the same rules; their refusals come back here as Vietnamese messages beside the field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.ingest.desk import labels, queries
from services.ingest.desk.web import page, posted, render, require
from services.ingest.views import categories as api
from services.ingest.views.site import save_site
from shared import articles, site
from shared.problems import Problem
from shared.web import pool_key, settings_key

ADMIN = ("admin",)
CATEGORY_ERRORS = {
    "name": "Hãy nhập tên chuyên mục (tối đa 100 ký tự).",
    "slug": "Đường dẫn gồm chữ thường không dấu và dấu gạch ngang, ví dụ tin-hoat-dong;"
    " một số tên dành riêng cho trang web.",
    "redirect_to": "Hãy chọn một chuyên mục đang dùng khác để chuyển người đọc tới.",
    "position": "Chuyên mục đã ngừng không có chỗ trên thanh menu.",
}


@dataclass(frozen=True, slots=True)
class Failed:
    """A refused category form: which category (`slug`, "" for a new one), the field the
    message goes beside, the message, and what was typed, so the form comes back filled."""

    slug: str
    field: str
    message: str
    values: dict[str, str]


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    notice: str = "",
    failed: Failed | None = None,
    blocks_text: list[tuple[str, str]] | None = None,
    blocks_error: str = "",
) -> web.Response:
    desk = await require(request, roles=ADMIN)
    async with request.app[pool_key].connection() as conn:
        every = await articles.list_categories(conn, retired=True)
        counts = await queries.category_counts(conn)
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
        categories=[c for c in every if c.retired_at is None],
        retired=[c for c in every if c.retired_at is not None],
        counts=counts,
        zone=request.app[settings_key].zone,
        when=labels.when,
        blocks=[*blocks_text, ("", "")],
        version=version,
        notice=notice,
        failed=failed,
        # A refusal about a category no longer listed (deleted meanwhile) is said on top.
        lost=failed
        if failed and failed.slug and failed.slug not in {c.slug for c in every}
        else None,
        blocks_error=blocks_error,
    )


@page
async def site_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _message(problem: Problem) -> tuple[str, str]:
    """(the field, the Vietnamese message) for a refusal of the categories' API."""
    for error in problem.errors or []:
        field = error.get("field", "")
        return field, CATEGORY_ERRORS.get(field, error.get("message", ""))
    if problem.kind == "category-exists":
        return "slug", "Đã có chuyên mục với đường dẫn này; hãy chọn tên hoặc đường dẫn khác."
    if problem.kind == "category-has-articles":
        return "delete", (
            f"Chuyên mục này còn {problem.extra.get('articles', 0)} bài viết nên không xóa được."
            " Hãy cho ngừng chuyên mục (có thể chuyển người đọc sang chuyên mục khác),"
            " hoặc chuyển các bài sang chuyên mục khác trước."
        )
    if problem.kind == "category-is-redirect-target":
        names = ", ".join(problem.extra.get("targeted_by", ()))
        return "delete", (
            f"Chuyên mục đã ngừng ({names}) đang chuyển người đọc tới chuyên mục này;"
            " hãy chọn nơi chuyển tới khác cho chúng trước khi xóa."
        )
    if problem.status == 404:
        return "form", "Chuyên mục này không còn nữa; hãy tải lại trang."
    return "form", problem.detail or problem.title


async def _category_change(
    request: web.Request,
    fields: tuple[str, ...],
    change: Callable[[str, dict[str, Any], dict[str, str]], Awaitable[str]],
    *,
    new: bool = False,
) -> web.Response:
    """A posted category form (CSRF checked) made into `change(slug, given, data)`: `given` is
    the named fields that were filled in, the API's JSON of the change. The page again with the
    notice it returns, or the refused form filled with what was typed, the message beside its
    field (the category's form, or the new-category form if `new`)."""
    _, data = await posted(request, roles=ADMIN)
    slug = data.get("slug", "")
    given = {name: data[name].strip() for name in fields if data.get(name, "").strip()}
    try:
        notice = await change(slug, given, data)
    except Problem as problem:
        field, message = _message(problem)
        failed = Failed("" if new else slug, field, message, data)
        return await _page(request, status=problem.status, failed=failed)
    return await _page(request, notice=notice)


@page
async def create_category(request: web.Request) -> web.StreamResponse:
    async def create(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        category = await api.create(request.app, {"name": "", **given})
        return f"Đã tạo chuyên mục “{category.name}”."

    return await _category_change(request, ("name", "slug"), create, new=True)


@page
async def rename_category(request: web.Request) -> web.StreamResponse:
    async def rename(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        category = await api.change(request.app, slug, {"name": given.get("name", "")})
        return f"Đã đổi tên thành “{category.name}”."

    return await _category_change(request, ("name",), rename)


@page
async def move_category(request: web.Request) -> web.StreamResponse:
    """One place up or down the menu: the API's `position`, from where it is now."""

    async def move(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        async with request.app[pool_key].connection() as conn:
            order = [c.slug for c in await articles.list_categories(conn)]
        if slug in order:
            to = order.index(slug) + (0 if data.get("to") == "up" else 2)
            await api.change(request.app, slug, {"position": max(1, to)})
        raise web.HTTPSeeOther("/desk/trang-web/")

    return await _category_change(request, (), move)


@page
async def retire_category(request: web.Request) -> web.StreamResponse:
    async def retire(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        category = await api.change(request.app, slug, {"retired": True, **given})
        where = " Trang chuyên mục báo đã ngừng."
        if category.redirect_to:
            async with request.app[pool_key].connection() as conn:
                target = await articles.category_by_slug(conn, category.redirect_to)
            where = f" Người đọc được chuyển tới chuyên mục “{target.name}”."
        return f"Đã ngừng chuyên mục “{category.name}”.{where}"

    return await _category_change(request, ("redirect_to",), retire)


@page
async def restore_category(request: web.Request) -> web.StreamResponse:
    async def restore(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        category = await api.change(request.app, slug, {"retired": False})
        return f"Đã dùng lại chuyên mục “{category.name}”."

    return await _category_change(request, (), restore)


@page
async def delete_category(request: web.Request) -> web.StreamResponse:
    async def delete(slug: str, given: dict[str, Any], data: dict[str, str]) -> str:
        await api.delete(request.app, slug)
        return f"Đã xóa chuyên mục “{slug}”."

    return await _category_change(request, (), delete)


@page
async def save_links(request: web.Request) -> web.StreamResponse:
    """Blocks as the form sends them: a title, then one link a line, "Title | URL"."""
    desk, _ = await posted(request, roles=ADMIN)
    sent = await request.post()
    titles = [v for v in sent.getall("block_title", []) if isinstance(v, str)]
    texts = [v for v in sent.getall("block_links", []) if isinstance(v, str)]
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
    version = str(sent.get("version", ""))
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
