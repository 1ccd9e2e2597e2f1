-- Publishes a frame to every other live node hosting any of the users, one
-- envelope per node naming the users there. Returns the envelopes sent.
--
-- KEYS: `user:{user}:nodes` per user. ARGV: prefix, my node id, frame,
-- then the user ids in the order of KEYS.
local prefix, me, frame = ARGV[1], ARGV[2], ARGV[3]
local targets, order = {}, {}
for i, key in ipairs(KEYS) do
  for _, node in ipairs(redis.call('SMEMBERS', key)) do
    if node ~= me then
      local users = targets[node]
      if users == nil then
        if redis.call('EXISTS', prefix .. 'node:' .. node) == 1 then
          users = {}
          order[#order + 1] = node
        else
          users = false
        end
        targets[node] = users
      end
      if users then
        users[#users + 1] = ARGV[3 + i]
      end
    end
  end
end
for _, node in ipairs(order) do
  redis.call('PUBLISH', prefix .. 'deliver:' .. node,
    '1 ' .. table.concat(targets[node], ',') .. '\n' .. frame)
end
return #order
