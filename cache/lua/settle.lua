-- Shared by swap.lua and recover.lua (cache/store.py puts it in front of them): the operator's data
-- settles a doubt. Versions continue above every version a doubting process reported, the identities
-- they held become ancestors, and a new epoch begins above any they held, so replicas move past the loss.
local function next_version(version_key, meta)
  return math.max(tonumber(redis.call('GET', version_key) or '0'),
    tonumber(redis.call('HGET', meta, 'high_water') or '0')) + 1
end

local function settle(meta, new_identity)
  redis.call('HSETNX', meta, 'identity', new_identity)
  local held = redis.call('HGET', meta, 'doubt_identities')
  if held then
    local ancestors = redis.call('HGET', meta, 'ancestors')
    redis.call('HSET', meta, 'ancestors', ancestors and (ancestors .. ',' .. held) or held)
  end
  redis.call('HDEL', meta, 'doubt', 'doubt_identities')
  redis.call('HSET', meta, 'epoch', math.max(tonumber(redis.call('HGET', meta, 'epoch') or '0'),
    tonumber(redis.call('HGET', meta, 'high_epoch') or '0')) + 1)
end

