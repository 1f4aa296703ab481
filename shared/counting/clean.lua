-- Unmark the articles copied to PostgreSQL, each only if Redis still holds the value just copied:
-- a view that landed in between keeps the mark for the next copy (shared/counting/count.py).
-- KEYS: views-dirty, then one views key per article. ARGV: id, value ("" if none), id, value...
for i = 1, #ARGV, 2 do
  if (redis.call('GET', KEYS[(i + 1) / 2 + 1]) or '') == ARGV[i + 1] then
    redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return 0
