-- For each user, whether a live node other than this one hosts it.
--
-- KEYS: `user:{user}:nodes` per user. ARGV: prefix, my node id.
local prefix, me = ARGV[1], ARGV[2]
local online = {}
for i, key in ipairs(KEYS) do
  online[i] = 0
  for _, node in ipairs(redis.call('SMEMBERS', key)) do
    if node ~= me and redis.call('EXISTS', prefix .. 'node:' .. node) == 1 then
      online[i] = 1
      break
    end
  end
end
return online
