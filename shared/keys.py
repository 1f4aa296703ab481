"""Every Redis key bantin uses, in one place, so that no two parts spell one differently."""

from __future__ import annotations

PREFIX = "bantin:"

# Page cache: a site-wide version number is part of every cached page's key, so one INCR
# invalidates every page at once (publication changes home, category and related lists).
SITE_VERSION = PREFIX + "site:version"


def page(version: int | str, path: str) -> str:
    return f"{PREFIX}page:{version}:{path}"


# Feeds: rendered documents, and the coalescing of rebuilds.
FEEDS_DIRTY = PREFIX + "feeds:dirty"  # set of scopes ("all", category slugs) to rebuild
FEEDS_SCHEDULED = PREFIX + "feeds:scheduled"  # present while a rebuild is already queued
FEEDS_LOCK = PREFIX + "feeds:lock"


def feed(scope: str, fmt: str) -> str:
    """A hash with the fields body, etag, last_modified, content_type."""
    return f"{PREFIX}feed:{scope}.{fmt}"


# Counters.
HITS_STREAM = PREFIX + "hits"
HITS_GROUP = "counters"
TOTAL = PREFIX + "stats:total"
ONLINE = PREFIX + "stats:online"  # sorted set: visitor -> last seen (unix seconds)


def article_views(article_id: int) -> str:
    return f"{PREFIX}views:{article_id}"


def rate(token_id: int, minute: int) -> str:
    return f"{PREFIX}rate:{token_id}:{minute}"
