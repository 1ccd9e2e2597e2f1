-- Withdraws this node entirely: liveness, membership and every user entry.
--
-- KEYS: `node:{me}`, `nodes`, `node:{me}:users`. ARGV: prefix, my node id.
local prefix, me = ARGV[1], ARGV[2]
for _, user in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('SREM', prefix .. 'user:' .. user .. ':nodes', me)
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], me)
return 1
