-- Claims one due firing of a schedule: exactly one process gets each (the score moves forward atomically).
-- KEYS[1] due zset     P:{schedules}:due    knowledge base -> next firing (epoch seconds)
-- KEYS[2] every hash   P:{schedules}:every  knowledge base -> interval in seconds
-- ARGV[1] now (epoch seconds)
-- ARGV[2] knowledge base
-- ARGV[3] the next firing to set when this one is claimed (epoch seconds)
-- Returns 1 when this caller claimed the firing, 0 when it is not due (another process claimed it, or
-- the schedule was removed).
local due, every = KEYS[1], KEYS[2]
local now, kb, following = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local at = redis.call('ZSCORE', due, kb)
if not at or tonumber(at) > now or redis.call('HEXISTS', every, kb) == 0 then return 0 end
redis.call('ZADD', due, following, kb)
return 1
