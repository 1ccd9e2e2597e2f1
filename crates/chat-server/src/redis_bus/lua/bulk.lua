-- Registers or withdraws many users of this node at once.
--
-- KEYS: `node:{me}:users`. ARGV: prefix, my node id, `1` or `0`, user ids.
local prefix, me, add = ARGV[1], ARGV[2], ARGV[3] == '1'
for i = 4, #ARGV do
  local user_key = prefix .. 'user:' .. ARGV[i] .. ':nodes'
  if add then
    redis.call('SADD', user_key, me)
    redis.call('SADD', KEYS[1], ARGV[i])
  else
    redis.call('SREM', user_key, me)
    redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return #ARGV - 3
