-- Publishes an order to end a user's sessions to every other live node
-- hosting the user. Returns how many nodes it was published to.
--
-- KEYS: `user:{user}:nodes`. ARGV: prefix, my node id, the envelope.
local prefix, me = ARGV[1], ARGV[2]
local told = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= me and redis.call('EXISTS', prefix .. 'node:' .. node) == 1 then
    redis.call('PUBLISH', prefix .. 'deliver:' .. node, ARGV[3])
    told = told + 1
  end
end
return told
