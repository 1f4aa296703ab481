-- A publisher's batch into the stream, once (shared/counting/stream.py).
-- KEYS: stream, the batch's token key, the views-waiting count. ARGV: the stream's bound (views),
-- the most entries one append may delete, the token's TTL, the batch's views, its lines.
-- The token is claimed first: a batch sent again after a lost answer appends nothing. Beyond the
-- bound (the counters worker away for long), the oldest entries go, each taking its views off the
-- count. A count Redis refuses to raise (text written in it by hand) costs only the bound.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 0 end
local views = ARGV[4]
local added = redis.call('XADD', KEYS[1], '*', 'n', views, 'b', ARGV[5])
local waiting = redis.pcall('INCRBY', KEYS[3], views)
local bound, deleted = tonumber(ARGV[1]), 0
while type(waiting) == 'number' and waiting > bound and deleted < tonumber(ARGV[2]) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if oldest[1] == added then
    -- the count had drifted (the stream deleted by hand): it is this entry's views now
    redis.call('SET', KEYS[3], views)
    break
  end
  redis.call('XDEL', KEYS[1], oldest[1])
  deleted = deleted + 1
  waiting = redis.call('DECRBY', KEYS[3], tonumber(oldest[2][2]) or 0)
end
return tonumber(views)
