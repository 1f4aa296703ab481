"""An old portal's RSS 2.0 or Atom feed, for portals that have no other export: each entry an
article, its enclosures and media:content photos the cover and the gallery.

A feed is one document of bounded size (MAX_FEED_BYTES), read whole, refused before anything is
written when it is not well-formed or declares entities, then parsed by feedparser."""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import ParseError

import feedparser
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bantin.moving.engine import DEFAULT_CATEGORY, Item, Photo, category_slug
from shared.redirects import key

MAX_FEED_BYTES = 64 * 1024 * 1024
_TAG = re.compile(r"<[^>]+>")


class BadFeed(Exception):
    """The feed cannot be imported; the message says why."""


@dataclass(slots=True)
class Feed:
    source: str
    entries: list[Any]


def parse(raw: bytes, where: str) -> Feed:
    try:
        fromstring(raw, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise BadFeed(
            f"the feed declares XML entities (an 'XML bomb' is made that way): {err}"
        ) from err
    except ParseError as err:
        raise BadFeed(f"not well-formed XML: {err}") from err
    parsed = feedparser.parse(raw, sanitize_html=False, resolve_relative_uris=False)
    if parsed.get("version", "") == "" and not parsed.entries:
        raise BadFeed("neither RSS nor Atom: no channel or feed element with entries")
    link = parsed.feed.get("link") or where
    return Feed(source=f"feed:{link.rstrip('/')}", entries=list(parsed.entries))


def items(feed: Feed) -> Iterator[Item]:
    for entry in feed.entries:
        yield _entry(entry)


def _entry(entry: Any) -> Item:
    link = (entry.get("link") or "").strip()
    ident = (entry.get("id") or link).strip()
    if not ident:
        ident = hashlib.sha256((entry.get("title") or "").encode()).hexdigest()[:32]
    content = entry.get("content") or []
    body = content[0].get("value", "") if content else entry.get("summary", "")
    summary = _text(entry.get("summary", "")) if content else ""
    tags = [t.get("term", "") for t in entry.get("tags") or [] if t.get("term")]
    slug, name = category_slug(tags[0], tags[0]) if tags else DEFAULT_CATEGORY
    photos: list[Photo] = []
    seen: set[str] = set()
    for media in [*entry.get("enclosures", []), *entry.get("media_content", [])]:
        url = (media.get("href") or media.get("url") or "").strip()
        kind = media.get("type", "") or ("image/" if media.get("medium") == "image" else "")
        if url and kind.startswith("image/") and url not in seen:
            seen.add(url)
            photos.append(Photo(url, "cover" if not photos else "gallery"))
    old = [link, ident if ident.startswith(("http://", "https://")) else ""]
    return Item(
        item=ident,
        data={
            "title": html.unescape(entry.get("title", "")),
            "category": slug,
            "summary": summary,
            "body": body,
            "body_format": "html",
            "author": entry.get("author", ""),
            "published_at": _when(entry),
            "tags": tags[1:21],
        },
        base_url=link,
        photos=photos,
        old_paths=tuple(dict.fromkeys(k for k in map(key, filter(None, old)) if k and k != "/")),
        category_name=name,
    )


def _when(entry: Any) -> str | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC).isoformat()


def _text(fragment: str) -> str:
    return html.unescape(_TAG.sub(" ", fragment)).strip()
