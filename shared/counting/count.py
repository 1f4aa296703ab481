"""The counters worker's drain: the stream's views into the counters, each exactly once.

One script (drain.lua, whose header says how) per batch reads about BATCH views, counts them
and deletes them in one atomic step. The counters: the total of human views, each article's
views, the day's views and unique visitors in the site's time zone (found from the zone's UTC
offsets, zone_offsets()), the visitors online and the bots' counter. The script counts nothing
while the total is missing (Redis emptied): persist.restore() refills it first.
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
DRAIN_BUDGET = 0.8  # seconds one drain may run: beat sends the next one a second later
DAY_TTL = 40 * 24 * 3600  # per-day keys in Redis; PostgreSQL keeps the history
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
# The article key's prefix, and the day keys' one prefix and two suffixes around the date.
_DAY, _VISITORS = keys.day_views("|").split("|"), keys.day_visitors("|").split("|")
assert _DAY[0] == _VISITORS[0], "the script expects one prefix for both day keys"
KEY_PARTS = (keys.article_views(0)[:-1], *_DAY, _VISITORS[1])


def drain(
    r: Redis, zone: ZoneInfo, database_url: str, budget: float = DRAIN_BUDGET
) -> dict[str, int]:
    """Count new entries until the stream holds no more or the budget is spent (an emptied
    Redis is refilled from `database_url` first). Returns the tallies that are not zero:
    counted, bots, dropped (malformed lines), batches, refused (writes Redis refused)."""
    deadline = time.monotonic() + budget
    ensure_group(r)
    tally: Counter[str] = Counter()
    try:
        while step(r, zone, database_url, tally) and time.monotonic() < deadline:
            pass
    except ResponseError as err:
        if "NOGROUP" not in str(err):
            raise
        ensure_group(r)  # the stream was deleted under us: nothing was read
    if tally["dropped"]:
        log.warning("drain: dropped %d malformed lines", tally["dropped"])
    return {name: n for name, n in tally.items() if n}


def step(r: Redis, zone: ZoneInfo, database_url: str, tally: Counter[str]) -> bool:
    """One script: read new entries until they hold BATCH views, count them, delete them.
    Adds to `tally`; returns whether the stream may hold more."""
    now = int(time.time())
    args: list[Any] = [keys.HITS_GROUP, CONSUMER, BATCH, now - ONLINE_WINDOW]
    args += [DAY_TTL, *KEY_PARTS, *zone_offsets(zone, now // 3600)]
    reply = script(r, "drain")(keys=SCRIPT_KEYS, args=args)
    if int(reply[0]) == -1:  # Redis lost its counters (nothing was read): refill them first
        from shared.counting.persist import restore  # the next stage of the trip, needed rarely

        restore(r, database_url, zone)
        reply = script(r, "drain")(keys=SCRIPT_KEYS, args=args)
        if int(reply[0]) == -1:
            raise RuntimeError("the total is still missing after a restore")
    humans, bots, dropped, read, refused, more = (int(x) for x in reply)
    if refused:
        log.error(
            "Redis refused %d of the writes counting %d page views (a counter key of the"
            " wrong type?); the rest were counted",
            refused,
            humans + bots,
        )
    tally.update(counted=humans, bots=bots, dropped=dropped, batches=int(read > 0), refused=refused)
    return bool(more)


@lru_cache(maxsize=16)
def zone_offsets(zone: ZoneInfo, hour: int) -> tuple[int, ...]:
    """The zone's UTC offsets (seconds) from OFFSETS_BEFORE before the unix hour `hour` to
    OFFSETS_AFTER after it: the first, then (unix second from which, offset) for each change.
    Looked at every six hours (no zone changes twice in six), and a change found to the
    quarter hour (offsets change at whole quarter hours, as the script assumes too)."""

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
