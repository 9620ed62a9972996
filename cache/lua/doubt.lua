-- A process saw the store lose data (version fell, identity changed, emptied): stop writes until
-- an operator recovers, and remember the highest version seen so the recovery starts above it.
-- KEYS: meta
-- ARGV: reason, held_version, held_identity ('' unknown), held_epoch
redis.call('HSETNX', KEYS[1], 'doubt', ARGV[1])
local high = tonumber(redis.call('HGET', KEYS[1], 'high_water') or '0')
if tonumber(ARGV[2]) > high then
  redis.call('HSET', KEYS[1], 'high_water', ARGV[2])
end
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'high_epoch') or '0') then
  redis.call('HSET', KEYS[1], 'high_epoch', ARGV[4])
end
if ARGV[3] ~= '' then
  local held = redis.call('HGET', KEYS[1], 'doubt_identities')
  if not held then
    redis.call('HSET', KEYS[1], 'doubt_identities', ARGV[3])
  elseif not string.find(',' .. held .. ',', ',' .. ARGV[3] .. ',', 1, true) then
    redis.call('HSET', KEYS[1], 'doubt_identities', held .. ',' .. ARGV[3])
  end
end
return 1
