"""The site's settings that admins edit: the sidebar's link blocks, shown on every page."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from redis.exceptions import RedisError

from services.ingest.auth import authenticate
from services.ingest.views.common import read_json
from shared import keys, site
from shared.problems import Problem, field_error, invalid
from shared.text import clean_text
from shared.web import pool_key, redis_key

log = logging.getLogger(__name__)

MAX_BLOCKS = 10
MAX_LINKS = 50  # per block
BLOCK_TITLE = 100
LINK_TITLE = 200
URL_LENGTH = 2000
_ETAG = re.compile(r'(?:W/)?"links-(\d{1,9})"')
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\<>\"'`]")


async def get_site(request: web.Request) -> web.Response:
    async with request.app[pool_key].connection() as conn:
        blocks, version = await site.link_blocks(conn)
    return _answer(blocks, version)


async def put_site(request: web.Request) -> web.Response:
    token = await authenticate(request, role="admin")
    blocks, version = await save_site(
        request, token.id, await read_json(request), _if_version(request.headers.get("If-Match"))
    )
    return _answer(blocks, version)


async def save_site(
    request: web.Request, token_id: int, data: Any, if_version: int | None
) -> tuple[tuple[site.LinkBlock, ...], int]:
    """Check and save the link blocks, then refresh every cached page (the API's PUT and the
    desk's form both come here)."""
    blocks, errors = check_site(data)
    if blocks is None:
        raise invalid(errors)
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


def check_site(data: Any) -> tuple[tuple[site.LinkBlock, ...] | None, list[dict[str, str]]]:
    """(blocks, []) when acceptable, else (None, every field error)."""
    errors: list[dict[str, str]] = []
    if not isinstance(data, dict):
        return None, [field_error("site", "must be a JSON object")]
    for name in sorted(set(data) - {"link_blocks"}):
        errors.append(field_error(name, "unknown field; known fields: link_blocks"))
    raw = data.get("link_blocks")
    blocks: list[site.LinkBlock] = []
    if raw is None:
        errors.append(field_error("link_blocks", "is required (a list; [] for none)"))
    elif not isinstance(raw, list):
        errors.append(field_error("link_blocks", "must be a list of blocks"))
    elif len(raw) > MAX_BLOCKS:
        errors.append(field_error("link_blocks", f"at most {MAX_BLOCKS} blocks"))
    else:
        for n, block in enumerate(raw):
            checked = _block(block, f"link_blocks.{n}", errors)
            if checked is not None:
                blocks.append(checked)
    if errors:
        return None, errors
    return tuple(blocks), []


def _block(data: Any, where: str, errors: list[dict[str, str]]) -> site.LinkBlock | None:
    if not isinstance(data, dict):
        errors.append(field_error(where, "must be an object with 'title' and 'links'"))
        return None
    for name in sorted(set(data) - {"title", "links"}):
        errors.append(field_error(f"{where}.{name}", "unknown field; known fields: title, links"))
    title = _title(data.get("title"), f"{where}.title", BLOCK_TITLE, errors)
    raw = data.get("links")
    links: list[site.Link] = []
    if not isinstance(raw, list) or not raw:
        errors.append(field_error(f"{where}.links", "must be a list of at least one link"))
    elif len(raw) > MAX_LINKS:
        errors.append(field_error(f"{where}.links", f"at most {MAX_LINKS} links per block"))
    else:
        for n, item in enumerate(raw):
            link = _link(item, f"{where}.links.{n}", errors)
            if link is not None:
                links.append(link)
    if title is None or len(links) != len(raw or ()):
        return None
    return site.LinkBlock(title, tuple(links))


def _link(data: Any, where: str, errors: list[dict[str, str]]) -> site.Link | None:
    if not isinstance(data, dict):
        errors.append(field_error(where, "must be an object with 'title' and 'url'"))
        return None
    for name in sorted(set(data) - {"title", "url"}):
        errors.append(field_error(f"{where}.{name}", "unknown field; known fields: title, url"))
    title = _title(data.get("title"), f"{where}.title", LINK_TITLE, errors)
    url = _url(data.get("url"), f"{where}.url", errors)
    if title is None or url is None:
        return None
    return site.Link(title, url)


def _title(value: Any, where: str, limit: int, errors: list[dict[str, str]]) -> str | None:
    if not isinstance(value, str):
        errors.append(field_error(where, "is required (a string)"))
        return None
    cleaned = clean_text(value)
    if not cleaned:
        errors.append(field_error(where, "must not be blank"))
        return None
    if len(cleaned) > limit:
        errors.append(
            field_error(where, f"is too long ({len(cleaned)} characters; at most {limit})")
        )
        return None
    return cleaned


def _url(value: Any, where: str, errors: list[dict[str, str]]) -> str | None:
    example = "an absolute http(s) address like https://vksndtc.gov.vn/"
    if not isinstance(value, str) or not value.strip():
        errors.append(field_error(where, f"is required: {example}"))
        return None
    url = value.strip()
    if len(url) > URL_LENGTH:
        errors.append(field_error(where, f"is too long (at most {URL_LENGTH} characters)"))
        return None
    if _BAD_URL_CHARS.search(url):
        errors.append(field_error(where, "has spaces, quotes or control characters"))
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        errors.append(field_error(where, f"is not a valid address; use {example}"))
        return None
    if parts.scheme.lower() not in ("http", "https"):
        errors.append(field_error(where, f"must start with http:// or https://: {example}"))
        return None
    if not parts.hostname or "@" in parts.netloc:
        errors.append(field_error(where, f"needs a host name and no user name: {example}"))
        return None
    return url


def _if_version(header: str | None) -> int | None:
    """The version an If-Match names; None when there is no precondition ('*' or absent);
    -1 (never a version) when it names something else, so that the save is refused."""
    if header is None or header.strip() == "*":
        return None
    for tag in header.split(","):
        match = _ETAG.fullmatch(tag.strip())
        if match:
            return int(match.group(1))
    return -1


def _answer(blocks: tuple[site.LinkBlock, ...], version: int) -> web.Response:
    return web.json_response(
        {"link_blocks": site.to_json(blocks)},
        headers={"ETag": f'"links-{version}"', "Cache-Control": "no-cache"},
    )
