"""Visit counters: the page views the publishers append to a Redis stream, counted exactly once.

Drain (every second, from beat): one Lua script per batch reads about BATCH views through the
consumer group `keys.HITS_GROUP` (XREADGROUP, or XAUTOCLAIM for entries a dead consumer left
pending), counts them, acknowledges them (XACK) and deletes them (XDEL), all in one atomic step.
The entries never travel to Python: an entry is delivered only inside a script that counts it
before anything else can run, so it is counted once, and a batch is never half counted. Entries
are pending on a consumer between two steps only if a consumer died between them (a worker of
an older version read them in Python first, or the script failed): after CLAIM_IDLE_MS the next
drain claims them inside its script and counts them then, once. Counted entries leave the
stream, so it holds only what is not counted yet, and its memory stays small while the drain
keeps up; the same script lowers the count of views waiting (`keys.HITS_WAITING`, the lag) by
those it counted.

An entry is one publisher's batch, two fields: `n`, its number of views, and `b`, its views one
a line, "<unix seconds> <bot 0|1> <article id or nothing> <visitor> <path>", identical views of
one second (the same visitor on the same page) being one line with their number before it,
"*<views> <unix seconds> ..." (see services/publisher/hits.py). Entries of the earlier formats,
one view each (a field `h` holding one such line, or five fields v, p, a, t, b), are counted
too, so a stream written by publishers of any version drains whole.

One batch updates: the total of human views, each article's views (the plain integer key the
ingest API reads), the day's views and the day's unique visitors (a HyperLogLog) in the site's
time zone, the visitors online (a sorted set visitor -> last seen, trimmed to the last five
minutes), and the bots' counter. The script finds the day from the zone's UTC offsets, which the
worker passes along with the instants they change at (see zone_offsets()).

Persist (every minute): copy the total, the views of articles viewed since the last copy and the
recent days to PostgreSQL. Restore: an empty Redis (no total key) is refilled from PostgreSQL
before anything is counted; the drain script refuses to count (and reads nothing) while the
total is missing, so no increment can land on an empty key and be overwritten, and SET NX makes
concurrent restores harmless. What Redis counted after the last copy is lost with Redis (at most
a minute).
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

BATCH = 1000  # views a script reads at least, when the stream holds them
READ_ENTRIES = 1  # entries per XREADGROUP (a publisher's batch holds up to 2,000 lines)
CLAIM_ENTRIES = 100  # entries per XAUTOCLAIM
DRAIN_BUDGET = 0.8  # seconds one drain may run: beat sends the next one a second later
CLAIM_IDLE_MS = 10_000  # entries pending this long belong to a consumer that died
DAY_TTL = 40 * 24 * 3600  # per-day keys in Redis; PostgreSQL keeps the history
FORGET_CONSUMER_MS = 24 * 3600 * 1000  # consumers idle this long (and holding nothing) go
TOTAL_KEY = "total"
# The span of time zone offsets passed to the script, around now. A view outside it (a clock
# years off) takes the offset at the nearest end: its day may then be off by the zone's DST
# shift, its views, total and article count as any other.
OFFSETS_BEFORE = 400 * 24 * 3600
OFFSETS_AFTER = 2 * 24 * 3600
_NEW = ">"  # XREADGROUP's "entries never delivered"; any other start is an XAUTOCLAIM cursor

# KEYS: stream, total, bots, online, views-dirty, views waiting. ARGV: group, consumer, count
# (entries per read), start (">" to read new entries, else the XAUTOCLAIM cursor), claim min
# idle ms, online cutoff (unix s), day TTL, article key prefix, day key prefix, day views suffix,
# day visitors suffix, views to read (new entries are read `count` at a time until the batch
# holds that many), then the zone's UTC offsets: offset, then (unix s from which, offset) pairs
# in order. The article and day keys are built here (keys.article_views(), keys.day_views(),
# keys.day_visitors()): they are only known once the entries are read. Returns {humans, bots,
# dropped, entries read, next cursor, writes refused, 1 if the stream may hold more new entries
# else 0}, or {-1, ...} without reading anything while the total is missing.
#
# Every entry the script sees is counted by it, once: XREADGROUP ">" delivers each entry once,
# and reads it with NOACK (acknowledged on delivery: the script counts it before anything else
# runs, so no pending-entries list, nor XCLAIM per entry in the AOF, is needed); XAUTOCLAIM
# returns only pending entries, which no one counted (whoever counts an entry acknowledges it in
# the same script), and the script acknowledges them. Counted entries are deleted. As before
# (the earlier script acknowledged first, then counted), a script failing halfway would lose its
# batch, and Redis keeps what a failed script wrote, so nothing after the read may fail:
# malformed entries are only tallied, no number read from an entry is trusted before its
# pattern matched, and every counting write goes through redis.pcall, so that one key Redis
# refuses (a wrong type, an overflow) costs that key's increment, not the batch's others. The
# refused writes are returned, and the worker logs them.
_DRAIN = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0, 0, 0, '0-0'} end
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local count, start = tonumber(ARGV[3]), ARGV[4]
local entries, nxt, dropped = {}, '0-0', 0
local ids = {}
local more = 0
if start == '>' then
  -- whole reads of `count` entries until the batch holds `budget` views or the stream is dry
  local budget, views = tonumber(ARGV[12]), 0
  repeat
    local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'NOACK',
      'STREAMS', stream, '>')
    local part = got and got[1][2] or {}
    for _, e in ipairs(part) do
      entries[#entries + 1] = e
      local f = e[2]
      views = views + (f[1] == 'n' and tonumber(f[2]) or 1)
    end
    more = #part == count and 1 or 0
  until more == 0 or views >= budget
else
  local got = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[5], start, 'COUNT', count)
  nxt, entries = got[1], got[2]
  if got[3] then dropped = #got[3] end -- 7.0: ids trimmed away while pending, out of the PEL
  local present, gone = {}, false
  for _, e in ipairs(entries) do
    if e then present[e[1]] = true else gone = true end
  end
  if gone then
    -- 6.2 claims an entry trimmed away while pending as a bare nil: find its id, still pending
    -- on this consumer in the range just claimed (which holds at most 10 * count of the PEL),
    -- and acknowledge it if it is really gone.
    local last = nxt == '0-0' and '+' or '(' .. nxt
    for _, p in ipairs(redis.call('XPENDING', stream, group, start, last, 10 * count, consumer)) do
      local id = p[1]
      if not present[id] and #redis.call('XRANGE', stream, id, id) == 0 then
        dropped = dropped + redis.call('XACK', stream, group, id)
      end
    end
  end
end
local cutoff = tonumber(ARGV[6])
local article_prefix, day_prefix = ARGV[8], ARGV[9]
local views_suffix, visitors_suffix = ARGV[10], ARGV[11]
local offsets = {}
for i = 13, #ARGV do offsets[#offsets + 1] = tonumber(ARGV[i]) end
local function day_of(seen)
  local offset = offsets[1]
  for j = 2, #offsets, 2 do
    if seen >= offsets[j] then offset = offsets[j + 1] else break end
  end
  -- the civil date of a day number (days since 1970-01-01): H. Hinnant's civil_from_days
  local z = math.floor((seen + offset) / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02d', y, m, d)
end
local humans, bots, batched = 0, 0, 0
local articles, online = {}, {} -- article id -> views; visitor -> last seen
local days = {} -- day name -> {views, visitors (a list, each once), visitors seen (a set)}
local quarters = {} -- unix quarter hour -> its day (every offset is whole quarter hours)
local times = {} -- a view's time as it came (a string) -> {unix seconds, its day, the string}
local function view(seen, bot, article, visitor, k)
  if seen == nil or #seen > 12 then -- (a time of more than 11 digits is no time either)
    dropped = dropped + 1
  elseif bot == '1' then
    bots = bots + k
  else
    humans = humans + k
    local t = times[seen]
    if t == nil then
      local at = tonumber(seen)
      local quarter = math.floor(at / 900)
      local day = quarters[quarter]
      if day == nil then
        local name = day_of(at)
        day = days[name]
        if day == nil then
          day = {0, {}, {}}
          days[name] = day
        end
        quarters[quarter] = day
      end
      t = {at, day, seen}
      times[seen] = t
    end
    local day = t[2]
    if article ~= '' then articles[article] = (articles[article] or 0) + k end
    day[1] = day[1] + k
    if not day[3][visitor] then
      day[3][visitor] = true
      day[2][#day[2] + 1] = visitor
    end
    local last = online[visitor]
    if t[1] >= cutoff and (last == nil or last[1] < t[1]) then online[visitor] = t end
  end
end
-- a line, matched where it starts in its entry (no copy of the line is made); its end is
-- found by a plain search, much faster than a pattern going through the path. A line that
-- starts with "*" holds identical views: "*<views> " (at most 9 digits), then the line.
local line = '^(%-?%d+) ([01]) 0*(%d*) ([^ \\n]+)'
local single = '^(%-?%d+) ([01]) 0*(%d*) ([^ ]+)'
for _, e in ipairs(entries) do
  if e then
    ids[#ids + 1] = e[1]
    local f = e[2]
    if f[1] == 'n' and f[3] == 'b' and f[5] == nil then
      batched = batched + (tonumber(f[2]) or 0)
      -- view() inlined, and the library functions held in locals: this loop runs once a
      -- line, and a Lua call or a global lookup costs as much as a table update
      local views, from = f[4], 1
      local size, match, find, byte = #views, string.match, string.find, string.byte
      while from <= size do
        local k = 1
        if byte(views, from) == 42 then
          local digits = match(views, '^%*(%d+) ', from)
          k = digits and #digits <= 9 and tonumber(digits) or 0
          from = from + (digits and #digits + 2 or 1)
        end
        local seen, bot, article, visitor = match(views, line, from)
        if k < 1 then seen = nil end -- a malformed number, or none of views
        local t = seen and times[seen]
        if t and bot == '0' then
          humans = humans + k
          local day = t[2]
          if article ~= '' then articles[article] = (articles[article] or 0) + k end
          day[1] = day[1] + k
          local known = day[3]
          if not known[visitor] then
            known[visitor] = true
            day[2][#day[2] + 1] = visitor
          end
          local last = online[visitor]
          if t[1] >= cutoff and (last == nil or last[1] < t[1]) then online[visitor] = t end
        else
          view(seen, bot, article, visitor, k) -- a second not seen yet, a bot, malformed
        end
        local nl = find(views, '\\n', from, true)
        if nl == nil then break end
        from = nl + 1
      end
    elseif f[1] == 'h' and f[3] == nil then
      local seen, bot, article, visitor = string.match(f[2], single)
      view(seen, bot, article, visitor, 1)
    else
      local h = {}
      for j = 1, #f, 2 do h[f[j]] = f[j + 1] end
      local visitor, seen = h.v, h.t and string.match(h.t, '^%-?%d+$')
      local bot, article = h.b == '1' and '1' or '0', string.match(h.a or '', '^0*(%d*)$')
      if not visitor or visitor == '' or not article then seen = nil end
      view(seen, bot, article, visitor, 1)
    end
  end
end
local refused = 0
local function write(...)
  local ok = redis.pcall(...)
  if type(ok) == 'table' and ok.err then refused = refused + 1 end
end
local function chunked(cmd, key, list, opt)
  for j = 1, #list, 400 do
    local part = {unpack(list, j, math.min(j + 399, #list))}
    if opt then table.insert(part, 1, opt) end
    write(cmd, key, unpack(part))
  end
end
if humans > 0 then write('INCRBY', KEYS[2], humans) end
if batched > 0 then write('DECRBY', KEYS[6], batched) end
if bots > 0 then write('INCRBY', KEYS[3], bots) end
local dirty = {}
for article, n in pairs(articles) do
  write('INCRBY', article_prefix .. article, n)
  dirty[#dirty + 1] = article
end
chunked('SADD', KEYS[5], dirty)
for name, day in pairs(days) do
  local views, visitors = day_prefix .. name .. views_suffix, day_prefix .. name .. visitors_suffix
  write('INCRBY', views, day[1])
  write('EXPIRE', views, ARGV[7])
  chunked('PFADD', visitors, day[2])
  write('EXPIRE', visitors, ARGV[7])
end
local pairs_ = {}
for visitor, t in pairs(online) do
  -- the time as it came (a string): ZADD would print a number back into one
  pairs_[#pairs_ + 1] = t[3]
  pairs_[#pairs_ + 1] = visitor
end
chunked('ZADD', KEYS[4], pairs_, 'GT')
if #ids > 0 then write('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[6]) end
if start == '>' and #ids > 0 and redis.call('XPENDING', stream, group)[1] == 0 then
  -- Nothing pending: every entry below the last one read was delivered and counted, so one
  -- XTRIM deletes the batch (whole listpack nodes at once, where XDEL seeks entry by entry).
  redis.call('XTRIM', stream, 'MINID', ids[#ids])
  redis.call('XDEL', stream, ids[#ids])
else
  for j = 1, #ids, 400 do
    local part = {unpack(ids, j, math.min(j + 399, #ids))}
    if start ~= '>' then redis.call('XACK', stream, group, unpack(part)) end
    redis.call('XDEL', stream, unpack(part))
  end
end
if redis.call('XLEN', stream) == 0 and (redis.call('GET', KEYS[6]) or '0') ~= '0' then
  -- nothing in the stream, nothing waiting: mend a count that drifted (an earlier publisher's
  -- MAXLEN trim, the stream or the count deleted by hand)
  write('SET', KEYS[6], '0')
end
return {humans, bots, dropped, #entries, nxt, refused, more}
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
    """No retries nor acks_late: beat sends the next drain a second later, and whatever an
    interrupted drain left pending is claimed by a later one."""
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
    """Claim what dead consumers left, then count new entries until the stream holds no more
    or the budget is spent. Returns the tallies (counted, bots, dropped, batches)."""
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
    if tally["counted"] or tally["bots"]:
        log.debug("counted %d views, %d by bots", tally["counted"], tally["bots"])
    return dict(tally)


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
    args += [now - ONLINE_WINDOW, DAY_TTL, *_key_parts(), views]
    args += zone_offsets(zone, now // 3600)
    reply = _drain_script(r)(keys=script_keys, args=args)
    if int(reply[0]) == -1:
        # Redis lost its counters (the script read nothing): refill them first, then count.
        restore(r, database_url, zone)
        reply = _drain_script(r)(keys=script_keys, args=args)
        if int(reply[0]) == -1:
            raise RuntimeError("the total is still missing after a restore")
    humans, bots, dropped, read = (int(x) for x in reply[:4])
    raw_next = reply[4]
    if len(reply) > 5 and int(reply[5]):
        log.error(
            "Redis refused %d of the writes counting %d page views (a counter key of the"
            " wrong type?); the rest were counted",
            int(reply[5]),
            humans + bots,
        )
        tally.update(refused=int(reply[5]))
    if read:
        tally.update(counted=humans, bots=bots, dropped=dropped, batches=1)
    elif dropped:
        tally.update(dropped=dropped)
    cursor = raw_next.decode() if isinstance(raw_next, bytes) else str(raw_next)
    return read, cursor, len(reply) > 6 and bool(int(reply[6]))


def ensure_group(r: Redis) -> None:
    """From id 0, not $: a group created after the stream (Redis emptied, then refilled by the
    publishers before the first drain) must still read what is already there."""
    try:
        r.xgroup_create(keys.HITS_STREAM, keys.HITS_GROUP, id="0", mkstream=True)
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise


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
    OFFSETS_AFTER after it, for the drain script: the first offset, then (unix second it starts
    at, offset) for each change, in order. One pair a DST change; a zone without DST: one value.
    Recomputed once an hour."""

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
            low, high = at, later  # offset(low) == current != offset(high)
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


@lru_cache(maxsize=8)
def _drain_script(r: Redis) -> Script:
    return r.register_script(_DRAIN)


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
