-- Claims a knowledge base for new crawls, unless a crawl into it may still be running: the one check that
-- keeps two crawls (or two re-crawls) of one knowledge base from running at once. The caller first learns
-- which claimed jobs have ended (their state lives in other slots) and passes them as stale.
-- KEYS[1] crawls hash   P:kb:{KB}:crawls   job id -> when it was claimed (epoch seconds)
-- ARGV[1] now (epoch seconds)
-- ARGV[2] n, the number of stale job ids that follow
-- ARGV[3 .. 2+n] job ids that have ended (removed first)
-- ARGV[3+n ..] the new job ids to claim
-- Returns an empty array when the new ids were claimed, else the ids (and claim times) still held, as
-- HGETALL returns them; nothing is claimed then.
local crawls = KEYS[1]
local now, n = ARGV[1], tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('HDEL', crawls, ARGV[i]) end
if redis.call('HLEN', crawls) > 0 then return redis.call('HGETALL', crawls) end
for i = 3 + n, #ARGV do redis.call('HSET', crawls, ARGV[i], now) end
return {}
