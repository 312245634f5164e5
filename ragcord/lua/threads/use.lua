-- Looks up the conversation of a thread the bot owns, and records the use so the thread stays owned.
-- KEYS[1] threads hash     P:owned-threads (thread id -> conversation id)
-- KEYS[2] last-use zset    P:owned-threads:used (thread id scored by its last use, epoch seconds)
-- ARGV[1] now (epoch seconds)
-- ARGV[2] the thread id
-- Returns the conversation id, or false when the bot does not own the thread.
local conversation = redis.call('HGET', KEYS[1], ARGV[2])
if conversation then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
return conversation
