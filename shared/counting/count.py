"""The counters worker's drain: the stream's views into the counters, each exactly once.

One script (drain.lua) per batch reads about BATCH views through the consumer group
`keys.HITS_GROUP` (XREADGROUP, or XAUTOCLAIM for entries a dead consumer left pending), counts
them, acknowledges and deletes them, in one atomic step: an entry is delivered only inside the
script that counts it, so it is counted once, and a batch is never half counted. A batch updates
the total of human views, each article's views (the key the ingest API reads), the day's views
and unique visitors (a HyperLogLog) in the site's time zone, the visitors online (a sorted set
visitor -> last seen) and the bots' counter. The script finds the day from the zone's UTC
offsets, passed with the instants they change at (zone_offsets()).

The script refuses to count (and reads nothing) while the total is missing: Redis was emptied,
and persist.restore() refills it from PostgreSQL first, so that no increment lands on an empty
key to be overwritten.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from shared import keys
from shared.counting import ONLINE_WINDOW
from shared.counting.stream import ensure_group, script

log = logging.getLogger(__name__)

BATCH = 1000  # views a script reads at least, when the stream holds them
READ_ENTRIES = 1  # entries per XREADGROUP (a publisher's batch holds up to 2,000 lines)
CLAIM_ENTRIES = 100  # entries per XAUTOCLAIM
DRAIN_BUDGET = 0.8  # seconds one drain may run: beat sends the next one a second later
CLAIM_IDLE_MS = 10_000  # entries pending this long belong to a consumer that died
DAY_TTL = 40 * 24 * 3600  # per-day keys in Redis; PostgreSQL keeps the history
# The span of zone offsets passed to the script, around now. A view outside it (a clock years
# off) takes the offset at the nearest end: its day may then be off by the zone's DST shift.
OFFSETS_BEFORE = 400 * 24 * 3600
OFFSETS_AFTER = 2 * 24 * 3600
_NEW = ">"  # XREADGROUP's "entries never delivered"; any other start is an XAUTOCLAIM cursor


def drain(
    r: Redis,
    zone: ZoneInfo,
    database_url: str,
    *,
    consumer: str,
    budget: float = DRAIN_BUDGET,
    min_idle_ms: int = CLAIM_IDLE_MS,
) -> dict[str, int]:
    """Claim what dead consumers left, then count new entries until the stream holds no more
    or the budget is spent (an emptied Redis is refilled from `database_url` first). Returns
    the tallies (counted, bots, dropped, batches, refused) that are not zero."""
    deadline = time.monotonic() + budget
    ensure_group(r)
    tally: Counter[str] = Counter()
    cursor = "0-0"
    try:
        while True:
            _, cursor, _ = step(r, zone, database_url, consumer, tally, cursor, min_idle_ms)
            if cursor == "0-0" or time.monotonic() >= deadline:
                break
        while time.monotonic() < deadline:
            _, _, more = step(r, zone, database_url, consumer, tally)
            if not more:
                break
    except ResponseError as err:
        if "NOGROUP" not in str(err):
            raise
        ensure_group(r)  # the stream was deleted under us: nothing was read
    if tally["dropped"]:
        log.warning(
            "%s: acknowledged %d malformed lines or trimmed entries", consumer, tally["dropped"]
        )
    return {name: n for name, n in tally.items() if n}


def step(
    r: Redis,
    zone: ZoneInfo,
    database_url: str,
    consumer: str,
    tally: Counter[str],
    start: str = _NEW,
    min_idle_ms: int = CLAIM_IDLE_MS,
    views: int = BATCH,
) -> tuple[int, str, bool]:
    """One script: read new entries (start ">") until they hold `views` views, or claim up to
    CLAIM_ENTRIES entries idle for min_idle_ms from the XAUTOCLAIM cursor `start`; count them,
    acknowledge and delete them. Adds to `tally`; returns (entries read, the next XAUTOCLAIM
    cursor or "0-0", whether the stream may hold more new entries)."""
    now = int(time.time())
    script_keys = [
        keys.HITS_STREAM,
        keys.TOTAL,
        keys.BOTS,
        keys.ONLINE,
        keys.VIEWS_DIRTY,
        keys.HITS_WAITING,
    ]
    count = READ_ENTRIES if start == _NEW else CLAIM_ENTRIES
    args: list[Any] = [keys.HITS_GROUP, consumer, count, start, min_idle_ms]
    args += [now - ONLINE_WINDOW, DAY_TTL, *_key_parts(), views, *zone_offsets(zone, now // 3600)]
    reply = script(r, "drain")(keys=script_keys, args=args)
    if int(reply[0]) == -1:  # Redis lost its counters (nothing was read): refill them first
        from shared.counting.persist import restore  # the next stage of the trip, needed rarely

        restore(r, database_url, zone)
        reply = script(r, "drain")(keys=script_keys, args=args)
        if int(reply[0]) == -1:
            raise RuntimeError("the total is still missing after a restore")
    humans, bots, dropped, read, raw_next, refused, more = reply
    if int(refused):
        log.error(
            "Redis refused %d of the writes counting %d page views (a counter key of the"
            " wrong type?); the rest were counted",
            int(refused),
            int(humans) + int(bots),
        )
        tally.update(refused=int(refused))
    tally.update(counted=int(humans), bots=int(bots), dropped=int(dropped), batches=int(read > 0))
    cursor = raw_next.decode() if isinstance(raw_next, bytes) else str(raw_next)
    return int(read), cursor, bool(int(more))


@lru_cache(maxsize=1)
def _key_parts() -> tuple[str, str, str, str]:
    """What the script builds the article and day keys from: the article key prefix, and the
    day keys' prefix and two suffixes around the date (checked against shared.keys)."""
    article_prefix = keys.article_views(0)[:-1]
    marker = "0000-00-00"
    day_prefix, views_suffix = keys.day_views(marker).split(marker)
    visitors_prefix, visitors_suffix = keys.day_visitors(marker).split(marker)
    assert keys.article_views(123) == article_prefix + "123"
    assert visitors_prefix == day_prefix, "the script expects one prefix for both day keys"
    return article_prefix, day_prefix, views_suffix, visitors_suffix


@lru_cache(maxsize=16)
def zone_offsets(zone: ZoneInfo, hour: int) -> tuple[int, ...]:
    """The zone's UTC offsets (seconds) from OFFSETS_BEFORE before the unix hour `hour` to
    OFFSETS_AFTER after it: the first offset, then (unix second it starts at, offset) for each
    change, in order (a zone without DST: one value). Recomputed once an hour."""

    def offset(at: int) -> int:
        delta = datetime.fromtimestamp(at, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start, end = hour * 3600 - OFFSETS_BEFORE, hour * 3600 + OFFSETS_AFTER
    stride = 6 * 3600  # no zone changes its offset twice in six hours
    out = [offset(start)]
    at, current = start, out[0]
    while at < end:
        later = min(at + stride, end)
        if offset(later) != current:
            low, high = at, later  # offset(low) == current != offset(high): bisect
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == current:
                    low = middle
                else:
                    high = middle
            current = offset(high)
            out += [high, current]
            at = high
        else:
            at = later
    return tuple(out)


async def figures(redis: AsyncRedis, zone: ZoneInfo) -> dict[str, int]:
    """What the site shows: visitors online, the total, and today's views and unique visitors
    in the site's time zone."""
    day = datetime.now(zone).date().isoformat()
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(keys.ONLINE, time.time() - ONLINE_WINDOW, "+inf")
    pipe.get(keys.TOTAL)
    pipe.get(keys.day_views(day))
    pipe.pfcount(keys.day_visitors(day))
    online, total, views, visitors = await pipe.execute()
    return {
        "online": int(online or 0),
        "total": int(total or 0),
        "today_views": int(views or 0),
        "today_visitors": int(visitors or 0),
    }
