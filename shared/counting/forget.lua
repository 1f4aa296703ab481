-- Forget a consumer only if it holds no pending entry, in one step: XGROUP DELCONSUMER would
-- otherwise drop entries it read a moment ago, never to be counted (shared/counting/count.py).
-- KEYS: stream. ARGV: group, consumer.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
