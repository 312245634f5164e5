-- Owns a thread the bot opened, and forgets the owned threads nobody used for the bound (a bounded step per
-- call, so the hash stays as large as the threads in use).
-- KEYS[1] threads hash     P:owned-threads (thread id -> conversation id)
-- KEYS[2] last-use zset    P:owned-threads:used (thread id scored by its last use, epoch seconds)
-- ARGV[1] now (epoch seconds)
-- ARGV[2] seconds an unused thread stays owned
-- ARGV[3] the thread id
-- ARGV[4] its conversation id
-- Returns the number of threads forgotten.
local threads, used = KEYS[1], KEYS[2]
local now, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('HLEN', threads) > redis.call('ZCARD', used) then
  -- Threads owned before uses were recorded: their bound starts now.
  for _, thread in ipairs(redis.call('HKEYS', threads)) do redis.call('ZADD', used, 'NX', now, thread) end
end
redis.call('HSET', threads, ARGV[3], ARGV[4])
redis.call('ZADD', used, now, ARGV[3])
local old = redis.call('ZRANGEBYSCORE', used, '-inf', now - keep, 'LIMIT', 0, 100)
for _, thread in ipairs(old) do
  redis.call('HDEL', threads, thread)
  redis.call('ZREM', used, thread)
end
return #old
