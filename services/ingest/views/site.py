"""The site's settings that admins edit: the sidebar's link blocks, shown on every page."""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from services.ingest.auth import authenticate
from services.ingest.views.common import answer, if_match, read_json
from shared import keys, site
from shared.problems import Problem, invalid
from shared.shapes import check_site
from shared.web import pool_key, redis_key

log = logging.getLogger(__name__)

_ETAG = re.compile(r"links-(\d{1,9})")


async def get_site(request: web.Request) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        blocks, version = await site.link_blocks(conn)
    return _answer(blocks, version)


async def put_site(request: web.Request) -> web.Response:
    token = await authenticate(request, role="admin")
    if_version = _if_version(request)
    blocks, version = await save_site(request, token.id, await read_json(request), if_version)
    return _answer(blocks, version)


async def save_site(
    request: web.Request, token_id: int, data: Any, if_version: int | None
) -> tuple[tuple[site.LinkBlock, ...], int]:
    """Check and save the link blocks, then refresh every cached page (the API's PUT and the
    desk's form both come here)."""
    blocks, errors = check_site(data)
    if blocks is None:
        raise invalid(errors, "site")
    async with request.app[pool_key].connection() as conn:
        version = await site.save_link_blocks(
            conn, blocks, token_id=token_id, if_version=if_version
        )
    if version is None:
        raise Problem(
            412,
            "Precondition failed",
            "The link blocks changed since this ETag was read; GET them again and retry.",
            kind="stale-etag",
        )
    # Committed: every cached page shows the sidebar, so they all go stale at once.
    try:
        await request.app[redis_key].incr(keys.SITE_VERSION)
    except (RedisError, OSError) as err:
        log.warning("link blocks saved, but the site version could not be bumped: %s", err)
        raise Problem(
            503,
            "Service unavailable",
            "The link blocks were saved, but cached pages could not be refreshed; send the"
            " same request again.",
            kind="cache-unavailable",
            headers={"Retry-After": "5"},
        ) from err
    return blocks, version


def _if_version(request: web.Request) -> int | None:
    """The version If-Match names; None when there is no precondition ('*' or absent); -1
    (never a version) when it names something else, so that the save is refused."""
    header = if_match(request)
    if header is None:
        return None
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    if "*" in tags:
        return None
    for tag in tags:
        match = _ETAG.fullmatch(tag)
        if match:
            return int(match.group(1))
    return -1


def _answer(blocks: tuple[site.LinkBlock, ...], version: int) -> web.Response:
    return answer(
        "Site",
        {"link_blocks": site.to_json(blocks)},
        headers={"ETag": f'"links-{version}"', "Cache-Control": "no-cache"},
    )
