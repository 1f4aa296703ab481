"""The counters worker's side: the drain of the stream into the counters, exactly once
(drain.lua's header says how), what pages show of them, their copy in PostgreSQL and the
refill of an emptied Redis from it.

Redis is the source of truth while it holds the total. persist() copies, every minute and when
a counters worker stops (before_stop()), the total, yesterday's and today's views and unique
visitors (the HyperLogLog's bytes beside its count) and the views of the articles viewed since
the last copy. The drain counts nothing while the total is missing (Redis emptied): restore()
refills it first. Redis lost after a crash loses what it counted since the last copy (a minute
at most); after a graceful stop, nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from redis import Redis
from redis.asyncio.client import Pipeline

from shared import db, keys
from shared.counting.stream import script

log = logging.getLogger(__name__)

BATCH = 1000  # views a script reads at least, when the stream holds them
ONLINE_WINDOW = 300  # seconds: "online" means seen in the last five minutes
DRAIN_BUDGET = 0.8  # seconds one drain may run: beat sends the next one a second later
DAY_TTL = 40 * 24 * 3600  # per-day keys in Redis; PostgreSQL keeps the history
STOP_SETTLE = 1.0  # seconds without a new view that end the drain before a stop
STOP_LIMIT = 10.0  # seconds that drain may take at most
# One consumer for every drain: the script reads with NOACK, so no consumer ever holds anything.
CONSUMER = "drain"
# The span of zone offsets passed to the script, around now. A view outside it (a clock years
# off) takes the offset at the nearest end: its day may then be off by the zone's DST shift.
OFFSETS_BEFORE = 400 * 24 * 3600
OFFSETS_AFTER = 2 * 24 * 3600
SCRIPT_KEYS = (
    keys.HITS_STREAM,
    keys.TOTAL,
    keys.BOTS,
    keys.ONLINE,
    keys.VIEWS_DIRTY,
    keys.HITS_WAITING,
)
# The article key's prefix, and the day keys as formats of the date.
KEY_PARTS = (keys.article_views(0)[:-1], keys.day_views("%s"), keys.day_visitors("%s"))

TOTAL_KEY = "total"  # the total's row in PostgreSQL
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


def drain(
    r: Redis, zone: ZoneInfo, database_url: str, budget: float = DRAIN_BUDGET
) -> dict[str, int]:
    """Count new entries, one script (drain.lua) for each BATCH views or so, until the stream
    holds no more or the budget is spent (after one script at least). Returns the tallies that
    are not zero: counted, bots, dropped (malformed lines), batches, refused (writes refused)."""
    deadline = time.monotonic() + budget
    tally: Counter[str] = Counter()
    more, restored = True, False
    while more:
        now = int(time.time())
        args: list[Any] = [keys.HITS_GROUP, CONSUMER, BATCH, now - ONLINE_WINDOW]
        args += [DAY_TTL, *KEY_PARTS, *zone_offsets(zone, now // 3600)]
        reply = script(r, "drain")(keys=SCRIPT_KEYS, args=args)
        if int(reply[0]) == -1:  # Redis lost its counters (nothing was read): refill, then count
            if restored:  # never spin on a restore that did not take
                raise RuntimeError("the total is still missing after a restore")
            restore(r, database_url, zone)
            restored = True
        else:
            humans, bots, dropped, read, refused, left = (int(x) for x in reply)
            tally.update(counted=humans, bots=bots, dropped=dropped, refused=refused)
            tally.update(batches=int(read > 0))
            more = left > 0
        more = more and time.monotonic() < deadline
    if tally["dropped"]:
        log.warning("drain: dropped %d malformed lines", tally["dropped"])
    if tally["refused"]:
        log.error(
            "Redis refused %d of the writes counting %d page views (a counter key of the"
            " wrong type?); the rest were counted",
            tally["refused"],
            tally["counted"] + tally["bots"],
        )
    return {name: n for name, n in tally.items() if n}


@lru_cache(maxsize=16)
def zone_offsets(zone: ZoneInfo, hour: int) -> tuple[int, ...]:
    """The zone's UTC offsets (seconds) from OFFSETS_BEFORE before the unix hour `hour` to
    OFFSETS_AFTER after it: the first, then (unix second from which, offset) for each change.
    Looked at every six hours (no zone changes twice in six), and a change found to the
    quarter hour (offsets change at whole quarter hours)."""

    def offset(at: int) -> int:
        delta = datetime.fromtimestamp(at, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start, end, six = hour * 3600 - OFFSETS_BEFORE, hour * 3600 + OFFSETS_AFTER, 6 * 3600
    out = [offset(start)]
    for at in range(start + six, end + six, six):
        if offset(at) != out[-1]:
            change = next(q for q in range(at - six, at + 1, 900) if offset(q) != out[-1])
            out += [change, offset(change)]
    return tuple(out)


def ask_shown(pipe: Pipeline) -> None:
    """Queue on `pipe` what every page shows: the visitors online, then the total."""
    pipe.zcount(keys.ONLINE, time.time() - ONLINE_WINDOW, "+inf")
    pipe.get(keys.TOTAL)


def persist(r: Redis, database_url: str, zone: ZoneInfo) -> dict[str, int]:
    """Copy the counters to PostgreSQL; an emptied Redis is restored instead, never copied."""
    days = _days(zone)
    pipe = r.pipeline(transaction=True)  # one consistent reading
    pipe.get(keys.TOTAL)
    for day in days:
        pipe.get(keys.day_views(day))
        pipe.pfcount(keys.day_visitors(day))
        pipe.get(keys.day_visitors(day))
    total, *per_day = pipe.execute()
    if total is None:
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
        conn.execute(UPSERT_COUNTERS, _columns(rows))
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            views_keys = [keys.article_views(i) for i in chunk]
            values: list[Any] = r.mget(views_keys)
            pairs = [(i, int(v)) for i, v in zip(chunk, values, strict=True) if v is not None]
            if pairs:
                conn.execute(UPSERT_ARTICLE_VIEWS, _columns(pairs))
            # unmarked only where Redis still holds what was copied
            copied = [x for i, v in zip(chunk, values, strict=True) for x in (i, v or b"")]
            script(r, "clean")(keys=[keys.VIEWS_DIRTY, *views_keys], args=copied)
    return {"total": int(total), "articles": len(ids)}


def restore(r: Redis, database_url: str, zone: ZoneInfo) -> bool:
    """Refill an emptied Redis (no total key) from PostgreSQL; True if this call did it. Every
    value goes in with SET NX, the total last: a key that exists holds newer counts, and the
    drain counts nothing before the total exists, so restores at once neither double nor lose."""
    if r.exists(keys.TOTAL):
        return False
    days = _days(zone)
    day_keys = {f"day:{d}:views": keys.day_views(d) for d in days}
    day_keys |= {f"day:{d}:visitors": keys.day_visitors(d) for d in days}
    with db.connect(database_url) as conn:
        row = conn.execute("SELECT value FROM counters WHERE key = %s", (TOTAL_KEY,)).fetchone()
        for day in conn.execute(
            "SELECT key, value, sketch FROM counters WHERE key = ANY(%s)", (list(day_keys),)
        ):
            value = day["sketch"] if day["key"].endswith(":visitors") else day["value"]
            if value is not None:
                r.set(day_keys[day["key"]], value, nx=True, ex=DAY_TTL)
        articles = conn.execute("SELECT article_id, views FROM article_views").fetchall()
    for start in range(0, len(articles), 5000):
        pipe = r.pipeline(transaction=False)
        for article in articles[start : start + 5000]:
            pipe.set(keys.article_views(article["article_id"]), article["views"], nx=True)
        pipe.execute()
    total = int(row["value"]) if row else 0
    done = bool(r.set(keys.TOTAL, total, nx=True))
    if done and (row or articles):
        log.warning("Redis had no counters: restored from PostgreSQL (total %d)", total)
    return done


def before_stop(r: Redis, database_url: str, zone: ZoneInfo) -> dict[str, int]:
    """A counters worker's graceful stop: drain until no view came for STOP_SETTLE seconds (the
    publishers, stopping too, send their last ones), at most STOP_LIMIT, then copy."""
    deadline = quiet = time.monotonic()
    deadline += STOP_LIMIT
    while time.monotonic() < deadline:
        if drain(r, zone, database_url).get("batches"):
            quiet = time.monotonic()
        elif time.monotonic() - quiet >= STOP_SETTLE:
            break
        else:
            time.sleep(0.1)
    return persist(r, database_url, zone)


def set_total(r: Redis, database_url: str, total: int) -> None:
    """`bantin counters set-total`: a site moving from an old portal keeps its count. Redis
    first: the source of truth (the next copy mends PostgreSQL if its write fails)."""
    r.set(keys.TOTAL, total)
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(UPSERT_COUNTERS, ([TOTAL_KEY], [total], [None]))


def _days(zone: ZoneInfo) -> list[str]:
    today = datetime.now(zone).date()
    return [(today - timedelta(days=1)).isoformat(), today.isoformat()]


def _columns(rows: list[Any]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]
