"""Old links keep working: an address the site would answer 404 (or the home page's old
`/?p=123`) is looked up among the redirects that imports and `bantin redirects load` recorded,
and answered 301 to the page it moved to. An article's current address is computed when asked,
so a later edit of its title or category never breaks an old link."""

from __future__ import annotations

from aiohttp import web

from shared.metrics import Handler
from shared.redirects import keys
from shared.web import pool_key

_LOOKUP = """
    SELECT coalesce('/' || c.slug || '/' || a.slug || '-' || a.id, r.new_path) AS target
    FROM redirects r
    LEFT JOIN articles a ON a.id = r.article_id
    LEFT JOIN categories c ON c.id = a.category_id
    WHERE r.old_path = ANY(%s)
    ORDER BY array_position(%s, r.old_path) LIMIT 1
"""


async def moved_to(request: web.Request) -> str | None:
    """Where the requested old address moved, if anywhere."""
    candidates = [k for k in keys(request.path_qs) if k != "/"]  # the home page stays home
    if not candidates:
        return None
    async with request.app[pool_key].connection() as conn:
        cur = await conn.execute(_LOOKUP, (candidates, candidates))
        row = await cur.fetchone()
    target = row["target"] if row else None
    return target if target and target != request.path_qs else None


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        return await handler(request)
    if request.path == "/" and request.query_string:  # WordPress's /?p=123, /?page_id=7
        target = await moved_to(request)
        if target:
            return _moved(target)
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        target = await moved_to(request)
        if target:
            return _moved(target)
        raise
    if response.status == 404:
        target = await moved_to(request)
        if target:
            return _moved(target)
    return response


def _moved(target: str) -> web.Response:
    return web.Response(status=301, headers={"Location": target})
