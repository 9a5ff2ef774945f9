-- The "what teams build instead" anchor: check the balance and DECRBY in one Lua script on Redis.
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if balance < amount then return -1 end
return redis.call('DECRBY', KEYS[1], amount)
