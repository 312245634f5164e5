-- Appends turns to a conversation in one step and restarts its time to live.
-- KEYS[1] turns list       P:conv:C:turns (JSON turns, oldest first)
-- KEYS[2] summary string   P:conv:C:summary
-- ARGV[1] ttl (seconds) for both keys
-- ARGV[2] cap: keep at most this many turns, dropping the oldest (0 = no cap)
-- ARGV[3..] the turns as JSON, oldest first
-- Returns the length of the turns list.
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
local cap = tonumber(ARGV[2])
if cap > 0 then redis.call('LTRIM', KEYS[1], -cap, -1) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return redis.call('LLEN', KEYS[1])
