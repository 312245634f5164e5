-- Creates a job in state QUEUED with its seed page reserved and outstanding, and writes its first event
-- ('queued'). Only the job's own keys (one cluster slot): JobStore.create indexes and counts it beside this
-- script. Runs after lib.lua.
-- KEYS[1] job hash         P:job:{J}
-- KEYS[2] event stream     P:job:{J}:events
-- KEYS[3] seen hash        P:job:{J}:seen
-- ARGV[1] now (epoch seconds)
-- ARGV[2] retention (events kept in the stream)
-- ARGV[3] job id
-- ARGV[4..] field, value pairs of the record (id, knowledge_base, url, max_pages, max_depth, include, exclude)
-- Returns 1; an error reply 'job exists' when the job hash already exists.
local job, stream, seen = KEYS[1], KEYS[2], KEYS[3]
local now, retention = ARGV[1], ARGV[2]
if redis.call('EXISTS', job) == 1 then return redis.error_reply('job exists') end
for i = 4, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
local seed = redis.call('HGET', job, 'url')
redis.call('HSET', job, 'state', 'QUEUED', 'created_at', now, 'pages_discovered', 1, 'outstanding', 1,
  'pages_done', 0, 'pages_failed', 0, 'pages_skipped', 0, 'chunks_indexed', 0, 'pages_beyond_max_pages', 0,
  'event_seq', 0)
redis.call('HSET', seen, seed, '')
emit(job, stream, retention, now, 'STATE_CHANGED', '', 'queued', 0)
return 1
