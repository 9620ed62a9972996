-- (settle.lua comes first.) An operator accepts the data as it is after a loss: versions continue
-- above every version a process reported, replicas re-snapshot.
-- KEYS: version, people, ledgers, docs, changes, meta
-- ARGV: stream_maxlen, reason, new_identity
local meta = KEYS[6]
local version = next_version(KEYS[1], meta)
redis.call('SET', KEYS[1], version)
settle(meta, ARGV[3])
local at = redis.call('TIME')
redis.call('HSET', meta, 'recovered_at', at[1], 'recovered_reason', ARGV[2])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], '*', 'v', tostring(version), 'kind', 'reset')
return version
