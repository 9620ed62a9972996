-- One admin write, atomically: check the version the caller read, bump it, store ledgers,
-- projections and idempotency documents, and append the change event. The caller computed
-- everything for version expected+1 (audit entries, responses); the check makes that true.
-- KEYS: version, people, ledgers, docs, changes, meta
-- ARGV: expected_version, stream_maxlen, n_people, (code, ledger, projection) * n_people,
--       n_docs, (doc_key, doc_value) * n_docs, rules_fingerprint, identity, floor, new_identity
-- Returns {1, new_version}, {0, current_version} when another write came first,
-- {2, stored_fingerprint} when the stored timelines were derived under other points rules, or
-- {3, why} when the data is in doubt (this writer saw a higher version or another identity).
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local rules, identity = ARGV[#ARGV - 3], ARGV[#ARGV - 2]
local floor, fresh = tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
local doubt = redis.call('HGET', KEYS[6], 'doubt')
if doubt then
  return {3, doubt}
end
local stored_identity = redis.call('HGET', KEYS[6], 'identity')
if floor > current then
  return {3, 'the store is at data version ' .. current .. ' but this process has seen ' .. floor ..
    ': Redis lost acknowledged changes'}
end
if identity ~= '' and stored_identity ~= identity then
  return {3, 'the data identity is ' .. tostring(stored_identity or 'missing') .. ', not ' .. identity}
end
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
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
if not stored_identity then
  redis.call('HSET', KEYS[6], 'identity', fresh)  -- the first write of new (or older) data names it
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', unpack(event))
return {1, version}
