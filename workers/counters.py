"""Visit counters: the page views the publishers append to a Redis stream, counted exactly once.

Drain (every second, from beat): read the stream through the consumer group `keys.HITS_GROUP`
in batches of BATCH and apply each batch with one Lua script, which also acknowledges it. The
script acknowledges entry by entry (XACK of one id answers 1 only the first time) and counts
only the entries it acknowledged itself; so a batch applied twice, by a consumer that died after
reading it and by the one that later claims it (XAUTOCLAIM), still counts once, and a batch is
never half counted: the script runs atomically. Counted entries are then deleted from the stream
(XDEL), so the stream holds only what is not counted yet: its length is the lag, and its memory
stays small while the drain keeps up.

One batch updates: the total of human views, each article's views (the plain integer key the
ingest API reads), the day's views and the day's unique visitors (a HyperLogLog) in the site's
time zone, the visitors online (a sorted set visitor -> last seen, trimmed to the last five
minutes), and the bots' counter.

Persist (every minute): copy the total, the views of articles viewed since the last copy and the
recent days to PostgreSQL. Restore: an empty Redis (no total key) is refilled from PostgreSQL
before anything is counted; the drain script refuses to count while the total is missing, so no
increment can land on an empty key and be overwritten, and SET NX makes concurrent restores
harmless. What Redis counted after the last copy is lost with Redis (at most a minute).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

import psycopg
from celery.signals import worker_ready
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import ResponseError

from services.publisher.cache import ONLINE_WINDOW
from shared import db, keys
from workers.app import DRAIN_HITS, PERSIST_COUNTERS, app, pool, redis, run, settings

log = logging.getLogger(__name__)

BATCH = 1000  # entries per XREADGROUP / XAUTOCLAIM and per script
DRAIN_BUDGET = 0.8  # seconds one drain may run: beat sends the next one a second later
CLAIM_IDLE_MS = 10_000  # entries pending this long belong to a consumer that died
DAY_TTL = 40 * 24 * 3600  # per-day keys in Redis; PostgreSQL keeps the history
FORGET_CONSUMER_MS = 24 * 3600 * 1000  # consumers idle this long (and holding nothing) go
TOTAL_KEY = "total"

# KEYS: stream, total, bots, online, views-dirty, then the article and day keys the entries
# point at by index. ARGV: group, online cutoff, day TTL, then 7 values per entry:
# id, kind, visitor, seen (unix s), article key index (0: none), day views index, day visitors
# index. Kinds: h human, b bot, m malformed (acknowledged, not counted), x an id whose entry
# was trimmed away while pending (acknowledged only if it is really gone).
_APPLY = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0, 0, 0} end
local stream, group = KEYS[1], ARGV[1]
local cutoff = tonumber(ARGV[2])
local humans, bots, repeats, dropped = 0, 0, 0, 0
local incr, visitors, days, online, articles, acked = {}, {}, {}, {}, {}, {}
for i = 4, #ARGV, 7 do
  local id, kind = ARGV[i], ARGV[i + 1]
  if kind == 'x' and #redis.call('XRANGE', stream, id, id) > 0 then
    repeats = repeats + 1
  elseif redis.call('XACK', stream, group, id) == 1 then
    acked[#acked + 1] = id
    if kind == 'h' then
      humans = humans + 1
      local visitor, seen = ARGV[i + 2], tonumber(ARGV[i + 3])
      local a, dv, du = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
      if a > 0 then
        incr[a] = (incr[a] or 0) + 1
        articles[a] = true
      end
      incr[dv] = (incr[dv] or 0) + 1
      days[dv] = true
      days[du] = true
      visitors[du] = visitors[du] or {}
      table.insert(visitors[du], visitor)
      if seen >= cutoff and (online[visitor] == nil or online[visitor] < seen) then
        online[visitor] = seen
      end
    elseif kind == 'b' then
      bots = bots + 1
    else
      dropped = dropped + 1
    end
  else
    repeats = repeats + 1
  end
end
local function chunked(cmd, key, list, opt)
  for j = 1, #list, 400 do
    local part = {unpack(list, j, math.min(j + 399, #list))}
    if opt then table.insert(part, 1, opt) end
    redis.call(cmd, key, unpack(part))
  end
end
if humans > 0 then redis.call('INCRBY', KEYS[2], humans) end
if bots > 0 then redis.call('INCRBY', KEYS[3], bots) end
for k, n in pairs(incr) do redis.call('INCRBY', KEYS[k], n) end
for k, list in pairs(visitors) do chunked('PFADD', KEYS[k], list) end
for k in pairs(days) do redis.call('EXPIRE', KEYS[k], ARGV[3]) end
local pairs_ = {}
for visitor, seen in pairs(online) do
  pairs_[#pairs_ + 1] = seen
  pairs_[#pairs_ + 1] = visitor
end
chunked('ZADD', KEYS[4], pairs_, 'GT')
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[2])
local ids = {}
for k in pairs(articles) do ids[#ids + 1] = string.match(KEYS[k], '(%d+)$') end
chunked('SADD', KEYS[5], ids)
chunked('XDEL', stream, acked)
return {humans, bots, repeats, dropped}
"""

# Forget an article's "not persisted" mark only if Redis still holds the value just written to
# PostgreSQL: a view that landed in between keeps the mark for the next copy.
# KEYS: views-dirty, then one views key per id; ARGV: id, value ("" if none), id, value...
_CLEAN = """
for i = 1, #ARGV, 2 do
  if (redis.call('GET', KEYS[(i + 1) / 2 + 1]) or '') == ARGV[i + 1] then
    redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return 0
"""

Entry = tuple[bytes | None, dict[bytes, bytes] | None]


class _QuietDrains(logging.Filter):
    """Celery logs every task received and succeeded at INFO: for a drain every second that is
    two lines a second of nothing. Failures (logged at ERROR) still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.levelno <= logging.INFO
            and isinstance(args, dict)
            and args.get("name") == DRAIN_HITS
        )


for _name in ("celery.app.trace", "celery.worker.strategy"):
    if not any(isinstance(f, _QuietDrains) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_QuietDrains())


def consumer_name() -> str:
    """One consumer per worker process: what a dead process held is visible as its own."""
    return f"{socket.gethostname()}-{os.getpid()}"


# --- drain ---------------------------------------------------------------------------------------


@app.task(name=DRAIN_HITS, ignore_result=True)
def drain_hits(budget: float = DRAIN_BUDGET, min_idle_ms: int = CLAIM_IDLE_MS) -> dict[str, int]:
    """No retries nor acks_late: beat sends the next drain a second later, and an interrupted
    drain leaves its entries pending, to be claimed by the next one."""
    s = settings()
    database_url, _ = s.require_backends()
    return drain(
        redis(),
        s.zone,
        database_url,
        consumer=consumer_name(),
        budget=budget,
        min_idle_ms=min_idle_ms,
    )


def drain(
    r: Redis,
    zone: ZoneInfo,
    database_url: str,
    *,
    consumer: str,
    budget: float = DRAIN_BUDGET,
    min_idle_ms: int = CLAIM_IDLE_MS,
) -> dict[str, int]:
    """Claim what dead consumers left, then read new entries until the stream is empty or the
    budget is spent. Returns the tallies (counted, bots, repeats, dropped, batches)."""
    deadline = time.monotonic() + budget
    ensure_group(r)
    tally: Counter[str] = Counter()
    cursor = "0-0"
    while True:
        cursor, entries = claim(r, consumer, cursor, min_idle_ms)
        if entries:
            tally.update(apply(r, entries, zone, database_url, consumer=consumer))
        if cursor == "0-0" or time.monotonic() >= deadline:
            break
    while time.monotonic() < deadline:
        entries = read(r, consumer)
        if not entries:
            break
        tally.update(apply(r, entries, zone, database_url, consumer=consumer))
    if tally["counted"] or tally["bots"]:
        log.debug("counted %d views, %d by bots", tally["counted"], tally["bots"])
    return dict(tally)


def ensure_group(r: Redis) -> None:
    """From id 0, not $: a group created after the stream (Redis emptied, then refilled by the
    publishers before the first drain) must still read what is already there."""
    try:
        r.xgroup_create(keys.HITS_STREAM, keys.HITS_GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


def read(r: Redis, consumer: str, count: int = BATCH) -> list[Entry]:
    """New entries for this consumer (they stay pending on it until a script acknowledges)."""
    try:
        got = r.xreadgroup(keys.HITS_GROUP, consumer, {keys.HITS_STREAM: ">"}, count=count)
    except ResponseError as err:
        if "NOGROUP" not in str(err):
            raise
        ensure_group(r)  # the stream was deleted under us
        return []
    if not got:
        return []
    return cast(list[Entry], cast(Any, got)[0][1])


def claim(r: Redis, consumer: str, cursor: str, min_idle_ms: int) -> tuple[str, list[Entry]]:
    """Entries other consumers read and left pending for min_idle_ms: theirs to count no more.
    Redis 6.2 answers an entry trimmed away meanwhile as nil; its id, still pending, is found
    with XPENDING and passed on as kind x, so the PEL does not keep it for ever."""
    reply = r.xautoclaim(
        keys.HITS_STREAM, keys.HITS_GROUP, consumer, min_idle_ms, start_id=cursor, count=BATCH
    )
    raw_next, found = reply[0], reply[1]
    next_id = raw_next.decode() if isinstance(raw_next, bytes) else str(raw_next)
    entries = [e for e in cast(list[Entry], found) if e[0] is not None]
    if len(entries) < len(found):
        present = {e[0] for e in entries}
        pending = r.xpending_range(
            keys.HITS_STREAM, keys.HITS_GROUP, "-", "+", BATCH, consumername=consumer
        )
        entries += [
            (p["message_id"], None) for p in cast(Any, pending) if p["message_id"] not in present
        ]
    return next_id, entries


def apply(
    r: Redis, entries: list[Entry], zone: ZoneInfo, database_url: str, *, consumer: str = ""
) -> Counter[str]:
    """Count a batch and acknowledge it, atomically, in one script."""
    script_keys, args = _script_args(entries, zone)
    reply = _apply_script(r)(keys=script_keys, args=args)
    if int(reply[0]) == -1:
        # Redis lost its counters: refill them from PostgreSQL first, then count.
        restore(r, database_url, zone)
        reply = _apply_script(r)(keys=script_keys, args=args)
        if int(reply[0]) == -1:
            raise RuntimeError("the total is still missing after a restore")
    humans, bots, repeats, dropped = (int(x) for x in reply)
    if repeats:
        log.info("%s: %d entries were counted already (claimed after a crash)", consumer, repeats)
    if dropped:
        log.warning("%s: acknowledged %d malformed or trimmed entries", consumer, dropped)
    return Counter(counted=humans, bots=bots, repeats=repeats, dropped=dropped, batches=1)


def _script_args(entries: list[Entry], zone: ZoneInfo) -> tuple[list[str], list[Any]]:
    script_keys = [keys.HITS_STREAM, keys.TOTAL, keys.BOTS, keys.ONLINE, keys.VIEWS_DIRTY]
    index: dict[str, int] = {}

    def key(name: str) -> int:
        if name not in index:
            script_keys.append(name)
            index[name] = len(script_keys)  # Lua indexes KEYS from 1
        return index[name]

    # Every zone's offset is a whole number of quarter hours, so a quarter hour is in one day.
    days: dict[int, tuple[int, int]] = {}  # unix quarter hour -> (views key, visitors key)
    args: list[Any] = [keys.HITS_GROUP, int(time.time()) - ONLINE_WINDOW, DAY_TTL]
    for entry_id, fields in entries:
        parsed = _parse(fields) if fields is not None else None
        if parsed is None:
            args += [entry_id, "x" if fields is None else "m", "", 0, 0, 0, 0]
            continue
        visitor, seen, article, bot = parsed
        if bot:
            args += [entry_id, "b", "", 0, 0, 0, 0]
            continue
        quarter = seen // 900
        if quarter not in days:
            day = datetime.fromtimestamp(seen, zone).date().isoformat()
            days[quarter] = (key(keys.day_views(day)), key(keys.day_visitors(day)))
        views_key, visitors_key = days[quarter]
        article_key = key(keys.article_views(article)) if article else 0
        args += [entry_id, "h", visitor, seen, article_key, views_key, visitors_key]
    return script_keys, args


def _parse(fields: dict[bytes, bytes]) -> tuple[str, int, int, bool] | None:
    try:
        visitor = fields[b"v"].decode()
        seen = int(fields[b"t"])
        raw_article = fields.get(b"a", b"")
        article = int(raw_article) if raw_article else 0
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    if not visitor or article < 0:
        return None
    return visitor, seen, article, fields.get(b"b") == b"1"


@lru_cache(maxsize=8)
def _apply_script(r: Redis) -> Script:
    return r.register_script(_APPLY)


@lru_cache(maxsize=8)
def _clean_script(r: Redis) -> Script:
    return r.register_script(_CLEAN)


@lru_cache(maxsize=8)
def _forget_script(r: Redis) -> Script:
    return r.register_script(_FORGET)


# --- persist and restore -------------------------------------------------------------------------

UPSERT_COUNTERS = (
    "INSERT INTO counters (key, value) SELECT * FROM unnest(%s::text[], %s::bigint[])"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    " WHERE counters.value <> EXCLUDED.value"
)
# Only articles that still exist: views of one deleted since are dropped with it.
UPSERT_ARTICLE_VIEWS = (
    "INSERT INTO article_views (article_id, views)"
    " SELECT t.id, t.views FROM unnest(%s::bigint[], %s::bigint[]) AS t(id, views)"
    " JOIN articles a ON a.id = t.id"
    " ON CONFLICT (article_id) DO UPDATE SET views = EXCLUDED.views, updated_at = now()"
    " WHERE article_views.views <> EXCLUDED.views"
)

# Forget a consumer only if it holds no pending entry, in one step: XGROUP DELCONSUMER would
# otherwise drop entries it read a moment ago, and they would never be counted.
_FORGET = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


@app.task(
    name=PERSIST_COUNTERS,
    ignore_result=True,
    autoretry_for=(OSError, psycopg.OperationalError),
    retry_backoff=True,
    max_retries=3,
)
def persist_counters() -> dict[str, int]:
    s = settings()
    database_url, _ = s.require_backends()
    return persist(redis(), database_url, s.zone)


def persist(r: Redis, database_url: str, zone: ZoneInfo) -> dict[str, int]:
    """Copy the counters to PostgreSQL: the total, yesterday's and today's views and visitors,
    and the views of each article viewed since the last copy (the script marks them)."""
    if restore(r, database_url, zone):
        return {"restored": 1}
    today = datetime.now(zone).date()
    days = [(today - timedelta(days=1)).isoformat(), today.isoformat()]
    pipe = r.pipeline(transaction=True)  # one consistent reading
    pipe.get(keys.TOTAL)
    for day in days:
        pipe.get(keys.day_views(day))
        pipe.pfcount(keys.day_visitors(day))
    total, *per_day = pipe.execute()
    if total is None:  # emptied a moment ago: never copy an empty Redis over PostgreSQL
        return {"restored": int(restore(r, database_url, zone))}
    rows = [(TOTAL_KEY, int(total))]
    for day, views, visitors in zip(days, per_day[::2], per_day[1::2], strict=True):
        if views is not None:
            rows += [(f"day:{day}:views", int(views)), (f"day:{day}:visitors", int(visitors))]
    run(_write(UPSERT_COUNTERS, rows))

    ids = sorted({int(x) for x in r.sscan_iter(keys.VIEWS_DIRTY, count=1000)})
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        views_keys = [keys.article_views(i) for i in chunk]
        values = cast(list[bytes | None], r.mget(views_keys))
        pairs = list(zip(chunk, values, strict=True))
        run(_write(UPSERT_ARTICLE_VIEWS, [(i, int(v)) for i, v in pairs if v is not None]))
        flat: list[Any] = []
        for i, v in pairs:
            flat += [i, v or b""]
        _clean_script(r)(keys=[keys.VIEWS_DIRTY, *views_keys], args=flat)
    forgotten = forget_dead_consumers(r)
    return {"total": int(total), "articles": len(ids), "consumers_forgotten": forgotten}


async def _write(sql: str, rows: list[tuple[Any, int]]) -> None:
    if not rows:
        return
    first, second = zip(*rows, strict=True)
    async with pool().connection() as conn:
        await conn.execute(sql, (list(first), list(second)))


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
            name = c["name"]
            if _forget_script(r)(keys=[keys.HITS_STREAM], args=[keys.HITS_GROUP, name]) != -1:
                forgotten += 1
    return forgotten


def restore(r: Redis, database_url: str, zone: ZoneInfo) -> bool:
    """Refill an emptied Redis (no total key) from PostgreSQL; True if this call did it.

    Every value goes in with SET NX and the total last: a key that exists holds newer counts
    than PostgreSQL, and the drain counts nothing until the total exists, so two restores at once
    (worker start, a drain and the persist task) neither double nor lose anything. Today's unique
    visitors cannot be rebuilt (a HyperLogLog is not stored); they start again from zero.
    """
    if r.exists(keys.TOTAL):
        return False
    today = datetime.now(zone).date()
    day_keys = {f"day:{d.isoformat()}:views": d for d in (today - timedelta(days=1), today)}
    articles = 0
    with db.connect(database_url) as conn:
        row = conn.execute("SELECT value FROM counters WHERE key = %s", (TOTAL_KEY,)).fetchone()
        day_rows = conn.execute(
            "SELECT key, value FROM counters WHERE key = ANY(%s)", (list(day_keys),)
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
        day = day_keys[day_row["key"]].isoformat()
        r.set(keys.day_views(day), day_row["value"], nx=True, ex=DAY_TTL)
    total = int(row["value"]) if row else 0
    done = bool(r.set(keys.TOTAL, total, nx=True))
    if done and (row or articles):
        log.warning(
            "Redis had no counters: restored the total (%d) and %d articles' views from PostgreSQL",
            total,
            articles,
        )
    return done


def set_total(r: Redis, database_url: str, total: int) -> None:
    """`bantin counters set-total`: a site moving from an old portal keeps its count. Redis
    first: it is the source of truth, and the next copy mends PostgreSQL if the second write
    fails."""
    r.set(keys.TOTAL, total)
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(UPSERT_COUNTERS, ([TOTAL_KEY], [total]))


@worker_ready.connect
def _restore_at_start(**kwargs: Any) -> None:
    """A worker starting after Redis lost its data refills it before the first drain (the drain
    would too; this makes the page's counters right without waiting for a view)."""
    try:
        s = settings()
        database_url, redis_url = s.require_backends()
        with Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) as r:
            restore(r, database_url, s.zone)
    except Exception:
        log.exception("could not check the counters at worker start; the drain will")
