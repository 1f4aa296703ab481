"""Categories over the API: anyone lists those in use; admins create, change (rename, move in
the menu, retire or bring back) and delete them. The desk's categories page calls the same
functions (`change`, `delete`), so both follow the same rules."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.ingest.auth import authenticate
from services.ingest.views.common import answer, enqueue, read_json
from shared import articles, keys, shapes
from shared.feeds.formats import FORMATS
from shared.models import Category
from shared.problems import Problem, field_error, invalid
from shared.shapes import check_category, check_category_patch
from shared.tasks import SITE_CHANGED
from shared.web import pool_key, redis_key


async def list_categories(request: web.Request) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        found = await articles.list_categories(conn)
    return answer("Categories", [category_json(c) for c in found])


def category_json(category: Category) -> shapes.Category:
    found: shapes.Category = {"slug": category.slug, "name": category.name}
    if category.retired_at is not None:
        found["retired_at"] = category.retired_at
        found["redirect_to"] = category.redirect_to
    return found


async def changed(app: web.Application, slugs: list[str], gone: bool = False) -> None:
    """Note a change of categories. Every page's menu lists them, so every cached page goes
    stale now; the worker's SITE_CHANGED rebuilds the feeds of `slugs`. When they are `gone`
    (retired or deleted), their stored feeds are dropped here before the answer, so publishers
    stop serving them within a second (feeds.stored.FRESH_SECONDS) whether a worker runs or not;
    their addresses then answer 410 or their redirect."""
    pipe = app[redis_key].pipeline(transaction=True)
    pipe.incr(keys.SITE_VERSION)
    if gone:
        pipe.delete(*(keys.feed(slug, fmt) for slug in slugs for fmt in FORMATS))
    await pipe.execute()
    await enqueue(app, SITE_CHANGED, slugs)


async def create(app: web.Application, data: Any) -> Category:
    checked, errors = check_category(data)
    if checked is None:
        raise invalid(errors, "category")
    slug, name = checked
    async with app[pool_key].connection() as conn:
        try:
            category = await articles.create_category(conn, slug, name)
        except articles.Conflict as err:
            raise Problem(
                409, "Conflict", f"The category {slug!r} exists already.", kind="category-exists"
            ) from err
    await changed(app, [category.slug])
    return category


async def change(app: web.Application, slug: str, data: Any) -> Category:
    """Rename, reorder, retire (with a redirect) or bring back a category (CategoryPatch)."""
    async with app[pool_key].connection() as conn:
        patch, errors = check_category_patch(data, slug)
        if patch is None:
            await _known(conn, slug)  # an unknown category is a 404 before anything else
            raise invalid(errors, "category")
        try:
            category = await articles.change_category(
                conn,
                slug,
                name=patch.name,
                position=patch.position,
                retired=patch.retired,
                redirect_to=patch.redirect_to,
            )
        except articles.NotFound as err:
            raise _not_found(slug) from err
        except articles.Refused as err:
            raise invalid([field_error(err.field, err.message)], "category") from err
    await changed(app, [category.slug], gone=category.retired_at is not None)
    return category


async def delete(app: web.Application, slug: str) -> None:
    """Only a category nothing needs: one with articles is never deleted (409, with what to
    do instead)."""
    async with app[pool_key].connection() as conn:
        try:
            await articles.delete_category(conn, slug)
        except articles.NotFound as err:
            raise _not_found(slug) from err
        except articles.InUse as err:
            if err.articles:
                raise Problem(
                    409,
                    "Category has articles",
                    f"The category {slug!r} has {err.articles} article(s) and is never deleted"
                    ' with them: retire it (PATCH with {"retired": true}, optionally with'
                    ' "redirect_to") or move its articles to another category first.',
                    kind="category-has-articles",
                    articles=err.articles,
                ) from err
            raise Problem(
                409,
                "Category is a redirect target",
                f"The retired categories {', '.join(err.targeted_by)} send their readers to"
                f" {slug!r}: retire them again with another redirect_to first.",
                kind="category-is-redirect-target",
                targeted_by=list(err.targeted_by),
            ) from err
    await changed(app, [slug], gone=True)


async def _known(conn: articles.Conn, slug: str) -> None:
    try:
        await articles.category_by_slug(conn, slug)
    except articles.NotFound as err:
        raise _not_found(slug) from err


def _not_found(slug: str) -> Problem:
    return Problem(404, "Not found", f"There is no category {slug!r}.", kind="category-not-found")


# --- the handlers ---


async def create_category(request: web.Request) -> web.Response:
    await authenticate(request, role="admin")
    category = await create(request.app, await read_json(request))
    return answer(
        "Category",
        category_json(category),
        status=201,
        headers={"Location": f"/api/v1/categories/{category.slug}"},
    )


async def patch_category(request: web.Request) -> web.Response:
    await authenticate(request, role="admin")
    data = await read_json(request)
    category = await change(request.app, request.match_info["slug"], data)
    return answer("Category", category_json(category))


async def delete_category(request: web.Request) -> web.Response:
    await authenticate(request, role="admin")
    await delete(request.app, request.match_info["slug"])
    return web.Response(status=204)
