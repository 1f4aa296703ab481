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
FEEDS_STATS = PREFIX + "feeds:stats"  # hash: rebuilds (scopes rebuilt, for metrics and tests)
# Hash: scope -> the database clock when its feeds last read the articles (ISO 8601).
FEEDS_READ_AT = PREFIX + "feeds:read-at"
# The database clock up to which the sweep has compared article changes with FEEDS_READ_AT.
FEEDS_CHECKED = PREFIX + "feeds:checked"


def feed(scope: str, fmt: str) -> str:
    """A hash with the fields body, gzip, br, etag, last_modified, content_type."""
    return f"{PREFIX}feed:{scope}.{fmt}"


def feed_page(version: int | str, scope: str, fmt: str, page: int) -> str:
    """Older pages (RFC 5005), rendered on demand and kept until the site changes."""
    return f"{PREFIX}feedpage:{version}:{scope}.{fmt}:{page}"


# Held by the one beat that sends periodic tasks (workers/beat.py).
BEAT_LOCK = PREFIX + "beat:lock"


def rest_lock(image_id: int) -> str:
    """Held while a worker renders a photo's other renditions (workers/photos.py render_rest)."""
    return f"{PREFIX}render-rest:{image_id}"


# Task statistics, written by every worker (workers/app.py), read by /metrics: a hash with
# "<task>:succeeded", "<task>:failed", "<task>:retried" and "<task>:seconds".
TASK_STATS = PREFIX + "tasks:stats"

# Counters.
HITS_STREAM = PREFIX + "hits"
HITS_GROUP = "counters"
HITS_WAITING = PREFIX + "hits:waiting"  # views in the stream not counted yet (its lag)
TOTAL = PREFIX + "stats:total"
ONLINE = PREFIX + "stats:online"  # sorted set: visitor -> last seen (unix seconds)
BOTS = PREFIX + "stats:bots"  # views by known bots, kept out of TOTAL
VIEWS_DIRTY = PREFIX + "stats:views-dirty"  # set of article ids whose views PostgreSQL lacks


def article_views(article_id: int) -> str:
    return f"{PREFIX}views:{article_id}"


def day_views(day: str) -> str:
    """Human page views on one day (YYYY-MM-DD in the site's time zone)."""
    return f"{PREFIX}stats:day:{day}:views"


def day_visitors(day: str) -> str:
    """A HyperLogLog of the visitors seen on one day."""
    return f"{PREFIX}stats:day:{day}:visitors"


def hits_batch(token: str) -> str:
    """Present while a publisher's batch of hits is in the stream: a retried append is a no-op."""
    return f"{PREFIX}hits-batch:{token}"


def rate(token_id: int, minute: int) -> str:
    return f"{PREFIX}rate:{token_id}:{minute}"


def failed_auth(address: str, minute: int) -> str:
    """Failed authentications from one address in one minute."""
    return f"{PREFIX}auth-failed:{address}:{minute}"


# The desk (services/ingest/desk): sessions, and failed sign-ins counted per account and address.
def session(sid: str) -> str:
    return f"{PREFIX}session:{sid}"


def sign_in_failures(kind: str, who: str) -> str:
    """kind is "user" or "addr"; the key lives for the throttle's window."""
    return f"{PREFIX}signin:{kind}:{who}"
