-- One drain step (count.py): read new entries, count them, delete them, atomically. XREADGROUP
-- with NOACK delivers each entry once, inside this script, so every entry it reads it counts,
-- once. Redis keeps what a failed script wrote, so nothing after the read may fail: malformed
-- lines are only tallied, no number is trusted before its pattern matched, and each counting
-- write goes through redis.pcall (a key Redis refuses costs its own increment, not the others').
-- KEYS: stream, total, bots, online, views-dirty, views waiting.
-- ARGV: group, consumer, views to read at least, online cutoff (unix s), day TTL, article key
-- prefix, day views and day visitors key formats (of the date), then the zone's UTC offsets:
-- the first, then (unix s from which, offset) pairs in order.
-- Returns {humans, bots, dropped, entries read, writes refused, 1 if the stream may hold more},
-- or {-1} reading nothing while the total is missing (Redis emptied: restore first).
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local stream, budget = KEYS[1], tonumber(ARGV[3])
-- The group, made here if missing (an error if not), from id 0, not $: a group made after the
-- stream (Redis emptied, then refilled by the publishers) must read what is already there.
redis.pcall('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')
local entries, views, more = {}, 0, 0
repeat -- an entry at a time until the batch holds enough views or the stream is dry
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'NOACK',
    'STREAMS', stream, '>')
  local e = got and got[1][2][1]
  if e then
    entries[#entries + 1] = e
    views = views + (tonumber(e[2][2]) or 1)
  end
  more = e and 1 or 0
until more == 0 or views >= budget

local cutoff, dropped = tonumber(ARGV[4]), 0
local offsets = {}
for i = 9, #ARGV do offsets[#offsets + 1] = tonumber(ARGV[i]) end
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
local days = {} -- day name -> {views, visitors seen (a set)}
local times = {} -- a view's time as it came (a string) -> {unix seconds, its day, the string}
local function moment(seen)
  local at = tonumber(seen)
  local name = day_of(at)
  local day = days[name] or {0, {}}
  days[name] = day
  local t = {at, day, seen}
  times[seen] = t
  return t
end

-- Each line is matched where it starts in its entry (no copy of it is made), its end found by a
-- plain search; the library functions are held in locals: this loop runs once a line.
local humans, bots, batched = 0, 0, 0
local articles, online = {}, {} -- article id -> views; visitor -> last seen
local pattern = '^(%-?%d+) ([01]) 0*(%d*) ([^ \n]+)'
local match, find, byte = string.match, string.find, string.byte
for _, e in ipairs(entries) do
  local f = e[2]
  if f[1] == 'n' and f[3] == 'b' and f[5] == nil then
    batched = batched + (tonumber(f[2]) or 0)
    local views, from = f[4], 1
    local size = #views
    while from <= size do
      local k = 1
      if byte(views, from) == 42 then -- "*<views> " (at most 9 digits), then the line
        local digits = match(views, '^%*(%d+) ', from)
        k = digits and #digits <= 9 and tonumber(digits) or 0
        from = from + (digits and #digits + 2 or 1)
      end
      local seen, bot, article, visitor = match(views, pattern, from)
      if k < 1 or seen == nil or #seen > 12 then -- (more than 11 digits is no time either)
        dropped = dropped + 1
      elseif bot == '1' then
        bots = bots + k
      else
        local t = times[seen] or moment(seen)
        local day = t[2]
        humans = humans + k
        if article ~= '' then articles[article] = (articles[article] or 0) + k end
        day[1] = day[1] + k
        day[2][visitor] = true
        local last = online[visitor]
        if t[1] >= cutoff and (last == nil or last[1] < t[1]) then online[visitor] = t end
      end
      local nl = find(views, '\n', from, true)
      if nl == nil then break end
      from = nl + 1
    end
  else
    dropped = dropped + 1 -- not a batch: acknowledged, never counted
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
  write('INCRBY', ARGV[6] .. article, n)
  dirty[#dirty + 1] = article
end
chunked('SADD', KEYS[5], dirty)
for name, day in pairs(days) do
  local views, visitors = string.format(ARGV[7], name), string.format(ARGV[8], name)
  write('INCRBY', views, day[1])
  write('EXPIRE', views, ARGV[5])
  local seen = {}
  for visitor in pairs(day[2]) do seen[#seen + 1] = visitor end
  chunked('PFADD', visitors, seen)
  write('EXPIRE', visitors, ARGV[5])
end
local seen_at = {}
for visitor, t in pairs(online) do
  -- the time as it came (a string): ZADD would print a number back into one
  seen_at[#seen_at + 1] = t[3]
  seen_at[#seen_at + 1] = visitor
end
chunked('ZADD', KEYS[4], seen_at, 'GT')
if #entries > 0 then
  write('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[4])
  -- Every entry up to the last one read was delivered to a drain, which counted it: one XTRIM
  -- deletes them (whole listpack nodes at once, where XDEL seeks entry by entry).
  local last = entries[#entries][1]
  redis.call('XTRIM', stream, 'MINID', last)
  redis.call('XDEL', stream, last)
end
if redis.call('XLEN', stream) == 0 and (redis.call('GET', KEYS[6]) or '0') ~= '0' then
  write('SET', KEYS[6], '0') -- nothing left, nothing waiting: mend a count that drifted
end
return {humans, bots, dropped, #entries, refused, more}
