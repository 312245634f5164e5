-- Counts one use against a sliding window, unless the limit is reached.
-- KEYS[1] log sorted set   P:ratelimit:K (member per use, scored by its time in ms)
-- ARGV[1] now (epoch milliseconds)
-- ARGV[2] window (milliseconds)
-- ARGV[3] limit: uses allowed in any window
-- ARGV[4] a unique member for this use
-- Returns 0 when the use is allowed (and counted), else the milliseconds to wait (at least 1).
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
