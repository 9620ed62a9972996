-- One admin write, atomically: check the version the caller read, bump it, store ledgers,
-- projections and idempotency documents, and append the change event. The caller computed
-- everything for version expected+1 (audit entries, responses); the check makes that true.
-- KEYS: version, people, ledgers, docs, changes, meta
-- ARGV: expected_version, stream_maxlen, n_people, (code, ledger, projection) * n_people,
--       n_docs, (doc_key, doc_value) * n_docs, rules_fingerprint
-- Returns {1, new_version}, {0, current_version} when another write came first, or
-- {2, stored_fingerprint} when the stored timelines were derived under other points rules.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
local rules = ARGV[#ARGV]
local stored = redis.call('HGET', KEYS[6], 'rules_fingerprint')
if rules ~= '' and stored and stored ~= rules then
  return {2, stored}
end
-- A document written meanwhile (a concurrent identical request) also sends the caller back to
-- read again, where it finds the document and replays it instead of applying the change twice.
local d = 4 + 3 * tonumber(ARGV[3])
for j = 1, tonumber(ARGV[d]) do
  if redis.call('HEXISTS', KEYS[4], ARGV[d + 2 * j - 1]) == 1 then
    return {0, current}
  end
end
local version = current + 1
redis.call('SET', KEYS[1], version)
local event = {'v', tostring(version), 'kind', 'person'}
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local code, ledger, projection = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', KEYS[3], code, ledger)
  redis.call('HSET', KEYS[2], code, projection)
  table.insert(event, code)
  table.insert(event, projection)
  i = i + 3
end
local n_docs = tonumber(ARGV[i])
i = i + 1
for _ = 1, n_docs do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if rules ~= '' then
  redis.call('HSETNX', KEYS[6], 'rules_fingerprint', rules)  -- data loaded before fingerprints: adopt
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', unpack(event))
return {1, version}
