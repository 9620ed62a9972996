-- A load: swap staged projections, ledgers and idempotency documents in, bump the version and
-- tell every replica to re-snapshot. All or nothing.
-- KEYS: version, people, ledgers, docs, changes, meta, people_staging, ledgers_staging, docs_staging
-- ARGV: stream_maxlen, policy_id, loaded_at, rules_fingerprint
local version = redis.call('INCR', KEYS[1])
for _, pair in ipairs({{KEYS[7], KEYS[2]}, {KEYS[8], KEYS[3]}, {KEYS[9], KEYS[4]}}) do
  if redis.call('EXISTS', pair[1]) == 1 then
    redis.call('RENAME', pair[1], pair[2])
  else
    redis.call('DEL', pair[2])
  end
end
redis.call('HSET', KEYS[6], 'policy_id', ARGV[2], 'loaded_at', ARGV[3], 'rules_fingerprint', ARGV[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], '*', 'v', tostring(version), 'kind', 'reset')
return version
