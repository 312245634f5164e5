-- Creates a job in state QUEUED with its seed page reserved and outstanding, indexes it (all jobs, active
-- jobs), counts it and writes its first event ('queued'); first trims from the index the ended jobs whose
-- keys have expired. Runs after lib.lua.
-- KEYS[1] job hash         P:job:J
-- KEYS[2] event stream     P:job:J:events
-- KEYS[3] seen hash        P:job:J:seen
-- KEYS[4] job index        P:jobs (sorted set scored by creation time)
-- KEYS[5] active jobs      P:jobs:active (sorted set scored by creation time)
-- KEYS[6] expiring jobs    P:jobs:expiring (sorted set scored by when their keys expire)
-- KEYS[7] counters         P:jobs:counters (hash of monotonic counters)
-- ARGV[1] now (epoch seconds)
-- ARGV[2] retention (events kept in the stream)
-- ARGV[3] job id
-- ARGV[4..] field, value pairs of the record (id, knowledge_base, url, max_pages, max_depth, include, exclude)
-- Returns 1; an error reply 'job exists' when the job hash already exists.
local job, stream, seen, index, active, expiring, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6], KEYS[7]
local now, retention, id = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', job) == 1 then return redis.error_reply('job exists') end
-- A bounded step per new job keeps the index as long as the retained jobs, however many jobs ran.
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', expiring, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', index, gone)
  redis.call('ZREM', expiring, gone)
end
for i = 4, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
local seed = redis.call('HGET', job, 'url')
redis.call('HSET', job, 'state', 'QUEUED', 'created_at', now, 'pages_discovered', 1, 'outstanding', 1,
  'pages_done', 0, 'pages_failed', 0, 'pages_skipped', 0, 'chunks_indexed', 0, 'pages_beyond_max_pages', 0,
  'event_seq', 0)
redis.call('HSET', seen, seed, '')
redis.call('ZADD', index, now, id)
redis.call('ZADD', active, now, id)
redis.call('HINCRBY', counters, 'jobs_created', 1)
emit(job, stream, retention, now, 'STATE_CHANGED', '', 'queued', 0)
return 1
