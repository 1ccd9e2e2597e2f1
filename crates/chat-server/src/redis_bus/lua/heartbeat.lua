-- Marks this node alive for three heartbeats, checks its own subscription
-- with an empty message, and sweeps a bounded number of entries of nodes
-- whose liveness key expired. Returns whether the liveness key still
-- existed (if not, Redis lost this node's registration) and how many
-- subscribers received the check.
--
-- KEYS: `node:{me}`, `nodes`. ARGV: prefix, my node id, ttl seconds, now in
-- milliseconds, sweep budget.
local prefix, me = ARGV[1], ARGV[2]
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[4], 'EX', tonumber(ARGV[3]))
redis.call('SADD', KEYS[2], me)
local subscribers = redis.call('PUBLISH', prefix .. 'deliver:' .. me, '')
local budget = tonumber(ARGV[5])
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if budget <= 0 then
    break
  end
  if node ~= me and redis.call('EXISTS', prefix .. 'node:' .. node) == 0 then
    local users_key = prefix .. 'node:' .. node .. ':users'
    local users = redis.call('SPOP', users_key, budget)
    for _, user in ipairs(users) do
      redis.call('SREM', prefix .. 'user:' .. user .. ':nodes', node)
    end
    budget = budget - #users
    if redis.call('EXISTS', users_key) == 0 then
      redis.call('SREM', KEYS[2], node)
    end
  end
end
local live, users = 0, 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', prefix .. 'node:' .. node) == 1 then
    live = live + 1
    users = users + redis.call('SCARD', prefix .. 'node:' .. node .. ':users')
  end
end
return {existed, subscribers, live, users}
