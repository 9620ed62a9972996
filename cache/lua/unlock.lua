-- Release the load lock only if this owner still holds it.
-- KEYS: load_lock   ARGV: owner
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
