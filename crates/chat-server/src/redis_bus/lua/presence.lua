-- Changes one user's registration and counts the other live nodes that
-- host the user, dropping entries of dead nodes on the way.
--
-- KEYS: `user:{user}:nodes`, `node:{me}:users`.
-- ARGV: prefix, my node id, user id, `1` to register or `0` to withdraw.
local prefix, me, user = ARGV[1], ARGV[2], ARGV[3]
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[1], me)
  redis.call('SADD', KEYS[2], user)
else
  redis.call('SREM', KEYS[1], me)
  redis.call('SREM', KEYS[2], user)
end
local others = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= me then
    if redis.call('EXISTS', prefix .. 'node:' .. node) == 1 then
      others = others + 1
    else
      redis.call('SREM', KEYS[1], node)
    end
  end
end
return others
