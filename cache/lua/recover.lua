-- An operator accepts the data as it is after a loss: versions continue above every version a
-- process reported, the identities the doubting processes held become ancestors, replicas re-snapshot.
-- KEYS: version, people, ledgers, docs, changes, meta
-- ARGV: stream_maxlen, reason, new_identity
local meta = KEYS[6]
local version = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'),
  tonumber(redis.call('HGET', meta, 'high_water') or '0')) + 1
redis.call('SET', KEYS[1], version)
redis.call('HSETNX', meta, 'identity', ARGV[3])
local held = redis.call('HGET', meta, 'doubt_identities')
if held then
  local ancestors = redis.call('HGET', meta, 'ancestors')
  redis.call('HSET', meta, 'ancestors', ancestors and (ancestors .. ',' .. held) or held)
end
redis.call('HDEL', meta, 'doubt', 'doubt_identities')
-- The operator's data: a new epoch above any a doubting process held, so replicas may move past a loss.
redis.call('HSET', meta, 'epoch', math.max(tonumber(redis.call('HGET', meta, 'epoch') or '0'),
  tonumber(redis.call('HGET', meta, 'high_epoch') or '0')) + 1)
local at = redis.call('TIME')
redis.call('HSET', meta, 'recovered_at', at[1], 'recovered_reason', ARGV[2])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], '*', 'v', tostring(version), 'kind', 'reset')
return version
