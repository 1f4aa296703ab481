"""Site settings that admins edit over the API and every page shows: the sidebar's link blocks
("Liên kết website", "Phần mềm quản lý", ...).

Stored as one JSON document in `site_settings` (migration 0003) with a version number, which is
the document's ETag. The publisher reads them together with the categories in one round trip
(`chrome`), only when it renders a page that is not in the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from shared.articles import Conn
from shared.models import Category

LINK_BLOCKS = "link_blocks"


@dataclass(frozen=True, slots=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class LinkBlock:
    title: str
    links: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page shows around its content."""

    categories: list[Category]  # in use, in menu order
    link_blocks: tuple[LinkBlock, ...]
    # Retired categories' slugs -> the slug their readers are sent to, or None (410).
    retired: dict[str, str | None] = field(default_factory=dict)


def to_json(blocks: Sequence[LinkBlock]) -> list[dict[str, Any]]:
    return [
        {"title": b.title, "links": [{"title": k.title, "url": k.url} for k in b.links]}
        for b in blocks
    ]


def from_json(value: Any) -> tuple[LinkBlock, ...]:
    """Blocks from the stored document (written only by `save_link_blocks`, after validation;
    anything malformed is skipped rather than allowed to break every page)."""
    if not isinstance(value, list):
        return ()
    blocks = []
    for block in value:
        if not isinstance(block, dict) or not isinstance(block.get("title"), str):
            continue
        links = tuple(
            Link(link["title"], link["url"])
            for link in block.get("links") or ()
            if isinstance(link, dict)
            and isinstance(link.get("title"), str)
            and isinstance(link.get("url"), str)
        )
        blocks.append(LinkBlock(block["title"], links))
    return tuple(blocks)


async def link_blocks(conn: Conn) -> tuple[tuple[LinkBlock, ...], int]:
    """(blocks, version); version 0 when no admin has saved any yet."""
    cur = await conn.execute(
        "SELECT value, version FROM site_settings WHERE key = %s", (LINK_BLOCKS,)
    )
    row = await cur.fetchone()
    if row is None:
        return (), 0
    return from_json(row["value"]), int(row["version"])


async def save_link_blocks(
    conn: Conn,
    blocks: Sequence[LinkBlock],
    *,
    token_id: int | None,
    if_version: int | None = None,
) -> int | None:
    """Replace the link blocks; returns the new version, or None when `if_version` is given
    and the stored version is another (someone saved in between)."""
    async with conn.transaction():
        # One writer at a time, even before the row exists (FOR UPDATE locks no missing row).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('bantin:site_settings:' || %s))",
            (LINK_BLOCKS,),
        )
        cur = await conn.execute("SELECT version FROM site_settings WHERE key = %s", (LINK_BLOCKS,))
        row = await cur.fetchone()
        current = int(row["version"]) if row else 0
        if if_version is not None and if_version != current:
            return None
        cur = await conn.execute(
            "INSERT INTO site_settings (key, value, updated_by) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " version = site_settings.version + 1, updated_at = now(),"
            " updated_by = excluded.updated_by RETURNING version",
            (LINK_BLOCKS, Jsonb(to_json(blocks)), token_id),
        )
        saved = await cur.fetchone()
    assert saved is not None
    return int(saved["version"])


async def chrome(conn: Conn) -> Chrome:
    """The categories in use (in navigation order, as `articles.list_categories` gives them),
    the retired ones' redirects and the link blocks, in one round trip."""
    cur = await conn.execute(
        "SELECT (SELECT coalesce(json_agg(json_build_array(id, slug, name)"
        "   ORDER BY position, id), '[]') FROM categories WHERE retired_at IS NULL)"
        " AS categories,"
        " (SELECT coalesce(json_object_agg(c.slug, t.slug), '{}') FROM categories c"
        "   LEFT JOIN categories t ON t.id = c.redirect_to WHERE c.retired_at IS NOT NULL)"
        " AS retired,"
        " (SELECT value FROM site_settings WHERE key = %s) AS link_blocks",
        (LINK_BLOCKS,),
    )
    row = await cur.fetchone()
    assert row is not None
    return Chrome(
        categories=[Category(*item) for item in row["categories"]],
        link_blocks=from_json(row["link_blocks"]),
        retired=row["retired"],
    )
