"""Feed rebuilds: coalesced, locked, stored with their validators, announced to the hub.

A publication marks its scopes dirty and queues one rebuild a second later unless one is queued
already, so a burst of publications gives about one rebuild per feed per second. The rebuild
clears the queued flag before it reads the dirty set, so a publication that lands during a
rebuild queues the next one: the newest publication is always in a feed soon after.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

from shared import keys
from shared.articles import list_categories
from shared.feeds import build as feeds
from shared.feeds.build import http_date
from shared.feeds.formats import FORMATS
from workers.app import REBUILD_FEEDS, RETRY, WEBSUB_PING, app, pool, redis, run, settings

log = logging.getLogger(__name__)

COALESCE_SECONDS = 1.0
LOCK_SECONDS = 30  # the rebuild lock's lease, renewed after each scope
HUB_TIMEOUT = 10
STALE_AFTER = 15  # seconds: refresh_stale looks at changes older than this
# When the oldest transaction of another session still open began (NULL: none). Another role's
# sessions show no start to a role without pg_read_all_stats: bantin's services share one role.
_OLDEST_OPEN = (
    "(SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database()"
    " AND backend_type = 'client backend' AND pid <> pg_backend_pid())"
)


def site_changed(scopes: list[str]) -> None:
    """After a publication, edit or removal (or a photo's last renditions): every cached page
    goes stale at once (one INCR) and the feeds of these scopes are rebuilt soon, coalesced
    with other changes."""
    redis().incr(keys.SITE_VERSION)
    mark_dirty(scopes)


def mark_dirty(scopes: list[str]) -> None:
    r = redis()
    r.sadd(keys.FEEDS_DIRTY, *scopes)
    # The flag expires in case its task is lost; the sweep also notices dirty scopes.
    if r.set(keys.FEEDS_SCHEDULED, "1", nx=True, ex=30):
        app.send_task(REBUILD_FEEDS, countdown=COALESCE_SECONDS)


def ensure_present() -> None:
    """Mark dirty every scope whose feed is missing (first start, or Redis emptied), and
    re-queue a rebuild when dirty scopes wait with none queued."""
    scopes = ["all", *(c.slug for c in run(_categories()))]
    r = redis()
    missing = [s for s in scopes if not r.exists(keys.feed(s, "rss"))]
    if missing:
        r.sadd(keys.FEEDS_DIRTY, *missing)
    if r.scard(keys.FEEDS_DIRTY) and r.set(keys.FEEDS_SCHEDULED, "1", nx=True, ex=30):
        app.send_task(REBUILD_FEEDS, countdown=COALESCE_SECONDS)


@app.task(name=REBUILD_FEEDS, acks_late=True, **RETRY)
def rebuild_feeds() -> list[str]:
    r = redis()
    # A short lease, renewed after each scope: a worker killed mid-rebuild (kill -9) leaves
    # the lock behind, and the next rebuild must not wait minutes for it.
    with r.lock(keys.FEEDS_LOCK, timeout=LOCK_SECONDS, blocking_timeout=120) as lock:
        r.delete(keys.FEEDS_SCHEDULED)
        pipe = r.pipeline(transaction=True)
        pipe.smembers(keys.FEEDS_DIRTY)
        pipe.delete(keys.FEEDS_DIRTY)
        raw, _ = pipe.execute()
        scopes = sorted(s.decode() for s in raw)
        changed: list[str] = []
        failed: dict[str, Exception] = {}
        for scope in scopes:
            try:
                changed += run(_rebuild(scope))
                lock.reacquire()
            except Exception as err:  # one scope's failure must not cost the others theirs
                log.exception("cannot rebuild the feeds of %s; it stays dirty", scope)
                failed[scope] = err
        if failed:
            r.sadd(keys.FEEDS_DIRTY, *failed)  # not lost: the next rebuild retries them
    rebuilt = [s for s in scopes if s not in failed]
    if rebuilt:
        log.info("rebuilt feeds %s", ", ".join(rebuilt))
    if changed and settings().websub_hub:
        app.send_task(WEBSUB_PING, args=[changed])
    if failed:
        # Raised after the others are stored: retried (with backoff) when it is an outage.
        raise next(iter(failed.values()))
    return rebuilt


@app.task(name=WEBSUB_PING, **{**RETRY, "autoretry_for": (OSError,), "retry_backoff_max": 300})
def websub_ping(urls: list[str]) -> int:
    """Tell the hub these feeds changed (WebSub section 7 leaves the publish ping to the
    publisher; `hub.mode=publish` with each `hub.url` is what the common hubs accept)."""
    hub = settings().websub_hub
    if not hub:
        return 0
    body = urllib.parse.urlencode([("hub.mode", "publish"), *(("hub.url", u) for u in urls)])
    # The hub's URL is checked to be http(s) when settings are read.
    request = urllib.request.Request(  # noqa: S310
        hub,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT) as response:  # noqa: S310
            status: int = response.status
    except urllib.error.HTTPError as err:
        if err.code >= 500 or err.code == 429:
            raise OSError(f"hub answered {err.code}") from err  # retried, with backoff
        log.warning("hub %s refused the ping: %s", hub, err.code)
        return err.code
    log.info("pinged hub %s for %d feeds", hub, len(urls))
    return status


async def _categories() -> list[feeds.Category]:
    async with pool().connection() as conn:
        return await list_categories(conn)


async def _rebuild(scope: str) -> list[str]:
    """Render and store every format of one scope; returns the URLs whose bytes changed."""
    s = settings()
    r = redis()
    async with pool().connection() as conn:
        # The database's clock as the articles are read, or the start of the oldest
        # transaction still open, if earlier (its rows, stamped with its start, are not seen
        # yet): a change stamped later is not in these feeds (refresh_stale compares).
        cur = await conn.execute(f"SELECT least(clock_timestamp(), {_OLDEST_OPEN}) AS read_at")
        row = await cur.fetchone()
        assert row is not None
        try:
            category, latest, more = await feeds.load(conn, s, scope)
        except feeds.UnknownScope:
            r.delete(*(keys.feed(scope, fmt) for fmt in FORMATS))
            r.hdel(keys.FEEDS_READ_AT, scope)
            return []
    changed = []
    # Counted before the new feed is visible, so whoever sees it sees the count too.
    r.hincrby(keys.FEEDS_STATS, "rebuilds", 1)
    for fmt in FORMATS:
        rendered = feeds.render(s, scope, fmt, category, latest, more=more)
        key = keys.feed(scope, fmt)
        if r.hget(key, "etag") != rendered.etag.encode():
            # Last-Modified is when the feed's content last changed: now, whatever changed
            # (an entry withdrawn moves it too, though no entry's date is newer).
            mapping = {**rendered.mapping(), "last_modified": http_date(datetime.now(UTC))}
            r.hset(key, mapping=mapping)  # type: ignore[arg-type]
            changed.append(f"{s.site_url()}/feeds/{scope}.{fmt}")
    r.hset(keys.FEEDS_READ_AT, scope, row["read_at"].isoformat())
    return changed


def refresh_stale() -> list[str]:
    """Scopes whose articles changed after their feeds last read them, made stale again (pages
    too): what a lost `site_changed` left behind (Redis away just after a commit, a worker
    killed between its commit and the message). Each sweep looks at the changes since the
    previous one, older than STALE_AFTER (the usual path has refreshed those within seconds)."""
    r = redis()
    read_at = {
        _text(scope): datetime.fromisoformat(_text(when))
        for scope, when in r.hgetall(keys.FEEDS_READ_AT).items()
    }
    checked = r.get(keys.FEEDS_CHECKED)
    if checked is not None:
        since = datetime.fromisoformat(_text(checked))
    elif read_at:
        since = min(read_at.values())
    else:
        return []  # no feed built yet: ensure_present asks for them all
    upto, changes = run(_changes(since))
    never = datetime.min.replace(tzinfo=UTC)
    stale = sorted(slug for slug, last in changes.items() if last >= read_at.get(slug, never))
    if any(last >= read_at.get("all", never) for last in changes.values()):
        stale.insert(0, "all")
    if stale:
        # Most often a message lost; also an article that changed without showing (one held
        # for review, or scheduled): one needless rebuild then.
        log.info("articles of %s changed after their feeds were built; refreshed", stale)
        site_changed(stale)
    r.set(keys.FEEDS_CHECKED, upto.isoformat())
    return stale


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _changes(since: datetime) -> tuple[datetime, dict[str, datetime]]:
    """(up to when, each category's latest article change in [since, up to]). Up to
    STALE_AFTER ago, or the start of the oldest transaction still open: the rows it writes
    are stamped with its start, and must be in a later window."""
    async with pool().connection() as conn:
        cur = await conn.execute(
            "SELECT least(now() - make_interval(secs => %s),"
            f" {_OLDEST_OPEN}) AS upto, now() - interval '1 day' AS floor",
            (STALE_AFTER,),
        )
        row = await cur.fetchone()
        assert row is not None
        since = max(since, row["floor"])  # a look lost for long: not the whole history
        upto = max(row["upto"], since)
        cur = await conn.execute(
            "SELECT c.slug, max(a.updated_at) AS last FROM articles a"
            " JOIN categories c ON c.id = a.category_id"
            " WHERE a.updated_at >= %s AND a.updated_at <= %s GROUP BY c.slug",
            (since, upto),
        )
        return upto, {r["slug"]: r["last"] for r in await cur.fetchall()}
