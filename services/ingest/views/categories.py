from __future__ import annotations

from aiohttp import web

from services.ingest.auth import authenticate
from services.ingest.views.common import answer, enqueue, read_json
from shared import articles
from shared.problems import Problem, invalid
from shared.shapes import check_category
from shared.tasks import SITE_CHANGED
from shared.web import pool_key


async def list_categories(request: web.Request) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        found = await articles.list_categories(conn)
    return answer("Categories", [{"slug": c.slug, "name": c.name} for c in found])


async def create_category(request: web.Request) -> web.Response:
    await authenticate(request, role="admin")
    checked, errors = check_category(await read_json(request))
    if checked is None:
        raise invalid(errors, "category")
    slug, name = checked
    async with request.app[pool_key].connection() as conn:
        try:
            category = await articles.create_category(conn, slug, name)
        except articles.Conflict as err:
            raise Problem(
                409, "Conflict", f"The category {slug!r} exists already.", kind="category-exists"
            ) from err
    # The navigation on every page lists the categories, and the new one needs its feeds.
    await enqueue(request.app, SITE_CHANGED, [category.slug])
    return answer(
        "Category",
        {"slug": category.slug, "name": category.name},
        status=201,
        headers={"Location": f"/api/v1/categories/{category.slug}"},
    )
