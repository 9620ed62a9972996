-- (settle.lua comes first.) A load: swap staged projections, ledgers and idempotency documents in, bump the version and
-- tell every replica to re-snapshot. All or nothing.
-- KEYS: version, people, ledgers, docs, changes, meta, people_staging, ledgers_staging, docs_staging, load_lock
-- ARGV: stream_maxlen, policy_id, loaded_at, rules_fingerprint, new_identity, lock_owner ('' = no lock),
--       expected_version ('' = any)
-- Returns {1, version}, {0, current lock holder} when the lock is no longer this load's, or
-- {2, current version} when a write came after the load's checks (they no longer hold).
if ARGV[6] ~= '' then
  local holder = redis.call('GET', KEYS[10])
  if holder ~= ARGV[6] then
    return {0, holder or ''}
  end
end
if ARGV[7] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[7]) then
  return {2, redis.call('GET', KEYS[1]) or '0'}
end
-- Above every version a process reported seeing, so a load after data loss reuses none.
local version = next_version(KEYS[1], KEYS[6])
redis.call('SET', KEYS[1], version)
for _, pair in ipairs({{KEYS[7], KEYS[2]}, {KEYS[8], KEYS[3]}, {KEYS[9], KEYS[4]}}) do
  if redis.call('EXISTS', pair[1]) == 1 then
    redis.call('RENAME', pair[1], pair[2])
    redis.call('PERSIST', pair[2])  -- staging expires if a load dies; live data never does
  else
    redis.call('DEL', pair[2])
  end
end
local meta = KEYS[6]
redis.call('HSET', meta, 'policy_id', ARGV[2], 'loaded_at', ARGV[3], 'rules_fingerprint', ARGV[4])
settle(meta, ARGV[5])  -- a load settles a doubt (settle.lua)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[1], '*', 'v', tostring(version), 'kind', 'reset')
return {1, version}
