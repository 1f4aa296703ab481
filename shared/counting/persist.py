"""The counters' copy in PostgreSQL, and the refill of an emptied Redis from it.

Redis is the source of truth while it holds the total. Every minute (and when a counters worker
stops) persist() copies the total, yesterday's and today's views and unique visitors (the
HyperLogLog's bytes with its count) and the views of each article viewed since the last copy.
restore() refills an emptied Redis (no total key) before anything is counted; the drain counts
nothing until the total exists. What Redis counted after the last copy is lost with Redis: at
most a minute, nothing after a graceful stop (before_stop()).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis import Redis
from redis.exceptions import ResponseError

from shared import db, keys
from shared.counting.count import DAY_TTL, drain
from shared.counting.stream import script

log = logging.getLogger(__name__)

TOTAL_KEY = "total"
FORGET_CONSUMER_MS = 24 * 3600 * 1000  # consumers idle this long (and holding nothing) go
STOP_SETTLE = 1.0  # seconds without new views that end the drain before a stop
STOP_LIMIT = 10.0  # seconds the drain before a stop may take at most

UPSERT_COUNTERS = (
    "INSERT INTO counters (key, value, sketch)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[])"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, sketch = EXCLUDED.sketch,"
    " updated_at = now()"
    " WHERE counters.value <> EXCLUDED.value OR counters.sketch IS DISTINCT FROM EXCLUDED.sketch"
)
# Only articles that still exist: views of one deleted since are dropped with it.
UPSERT_ARTICLE_VIEWS = (
    "INSERT INTO article_views (article_id, views)"
    " SELECT t.id, t.views FROM unnest(%s::bigint[], %s::bigint[]) AS t(id, views)"
    " JOIN articles a ON a.id = t.id"
    " ON CONFLICT (article_id) DO UPDATE SET views = EXCLUDED.views, updated_at = now()"
    " WHERE article_views.views <> EXCLUDED.views"
)


def _days(zone: ZoneInfo) -> list[str]:
    today = datetime.now(zone).date()
    return [(today - timedelta(days=1)).isoformat(), today.isoformat()]


def persist(r: Redis, database_url: str, zone: ZoneInfo) -> dict[str, int]:
    """Copy the counters to PostgreSQL (an emptied Redis is restored instead, never copied)."""
    if restore(r, database_url, zone):
        return {"restored": 1}
    days = _days(zone)
    pipe = r.pipeline(transaction=True)  # one consistent reading
    pipe.get(keys.TOTAL)
    for day in days:
        pipe.get(keys.day_views(day))
        pipe.pfcount(keys.day_visitors(day))
        pipe.get(keys.day_visitors(day))
    total, *per_day = pipe.execute()
    if total is None:  # emptied a moment ago
        return {"restored": int(restore(r, database_url, zone))}
    rows: list[tuple[str, int, bytes | None]] = [(TOTAL_KEY, int(total), None)]
    for i, day in enumerate(days):
        views, visitors, sketch = per_day[3 * i : 3 * i + 3]
        if views is not None:
            rows += [
                (f"day:{day}:views", int(views), None),
                (f"day:{day}:visitors", visitors, sketch),
            ]
    ids = sorted({int(x) for x in r.sscan_iter(keys.VIEWS_DIRTY, count=1000)})
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(UPSERT_COUNTERS, [list(column) for column in zip(*rows, strict=True)])
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            views_keys = [keys.article_views(i) for i in chunk]
            values = cast(list[bytes | None], r.mget(views_keys))
            pairs = [(i, int(v)) for i, v in zip(chunk, values, strict=True) if v is not None]
            if pairs:
                conn.execute(
                    UPSERT_ARTICLE_VIEWS, [list(column) for column in zip(*pairs, strict=True)]
                )
            flat: list[Any] = []
            for i, v in zip(chunk, values, strict=True):
                flat += [i, v or b""]
            script(r, "clean")(keys=[keys.VIEWS_DIRTY, *views_keys], args=flat)
    forgotten = forget_dead_consumers(r)
    return {"total": int(total), "articles": len(ids), "consumers_forgotten": forgotten}


def restore(r: Redis, database_url: str, zone: ZoneInfo) -> bool:
    """Refill an emptied Redis (no total key) from PostgreSQL; True if this call did it.

    Every value goes in with SET NX and the total last: a key that exists holds newer counts
    than PostgreSQL, and the drain counts nothing until the total exists, so two restores at once
    (worker start, a drain and the persist task) neither double nor lose anything."""
    if r.exists(keys.TOTAL):
        return False
    day_keys = {}
    for day in _days(zone):
        day_keys[f"day:{day}:views"] = keys.day_views(day)
        day_keys[f"day:{day}:visitors"] = keys.day_visitors(day)
    articles = 0
    with db.connect(database_url) as conn:
        row = conn.execute("SELECT value FROM counters WHERE key = %s", (TOTAL_KEY,)).fetchone()
        day_rows = conn.execute(
            "SELECT key, value, sketch FROM counters WHERE key = ANY(%s)", (list(day_keys),)
        ).fetchall()
        with conn.cursor(name="bantin_restore_views") as cur:
            cur.itersize = 5000
            cur.execute("SELECT article_id, views FROM article_views")
            pipe = r.pipeline(transaction=False)
            for record in cur:
                pipe.set(keys.article_views(record["article_id"]), record["views"], nx=True)
                articles += 1
                if articles % 5000 == 0:
                    pipe.execute()
            pipe.execute()
    for day_row in day_rows:
        value = day_row["sketch"] if day_row["key"].endswith(":visitors") else day_row["value"]
        if value is not None:
            r.set(day_keys[day_row["key"]], value, nx=True, ex=DAY_TTL)
    total = int(row["value"]) if row else 0
    done = bool(r.set(keys.TOTAL, total, nx=True))
    if done and (row or articles):
        log.warning(
            "Redis had no counters: restored the total (%d), the days and %d articles' views"
            " from PostgreSQL",
            total,
            articles,
        )
    return done


def before_stop(r: Redis, database_url: str, zone: ZoneInfo, consumer: str) -> dict[str, int]:
    """A counters worker's last work on a graceful stop: drain until no view came for
    STOP_SETTLE seconds (the publishers, stopping at the same time, send their last batches),
    at most STOP_LIMIT seconds, then copy to PostgreSQL, so that Redis may lose its data."""
    deadline = time.monotonic() + STOP_LIMIT
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if drain(r, zone, database_url, consumer=consumer).get("batches"):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= STOP_SETTLE:
            break
        else:
            time.sleep(0.1)
    return persist(r, database_url, zone)


def set_total(r: Redis, database_url: str, total: int) -> None:
    """`bantin counters set-total`: a site moving from an old portal keeps its count. Redis
    first: it is the source of truth, and the next copy mends PostgreSQL if the second write
    fails."""
    r.set(keys.TOTAL, total)
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(UPSERT_COUNTERS, ([TOTAL_KEY], [total], [None]))


def forget_dead_consumers(r: Redis) -> int:
    """Each worker process is a consumer; those of processes long gone are removed (only when
    they hold nothing: what a dead consumer held is claimed by the drain first)."""
    try:
        consumers = r.xinfo_consumers(keys.HITS_STREAM, keys.HITS_GROUP)
    except ResponseError:  # no stream or no group yet
        return 0
    forgotten = 0
    for c in consumers:
        if c["pending"] == 0 and c["idle"] > FORGET_CONSUMER_MS:
            forget = script(r, "forget")
            if forget(keys=[keys.HITS_STREAM], args=[keys.HITS_GROUP, c["name"]]) != -1:
                forgotten += 1
    return forgotten
