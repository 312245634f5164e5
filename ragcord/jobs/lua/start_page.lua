-- Decides whether a page message may run; moves a QUEUED job to RUNNING on its first page, and counts a page
-- out (without running it) once cancellation was requested. Runs after lib.lua.
-- KEYS[1] job hash         P:job:{J}
-- KEYS[2] event stream     P:job:{J}:events
-- KEYS[3] seen hash        P:job:{J}:seen          (KEYS[3..8]: scratch, deleted when the job ends)
-- KEYS[4] done set         P:job:{J}:done
-- KEYS[5] hashes hash      P:job:{J}:hashes
-- KEYS[6] beyond set       P:job:{J}:beyond
-- KEYS[7] chunk owners     P:job:{J}:chunk-owners
-- KEYS[8] page chunks      P:job:{J}:page-chunks
-- ARGV[1] now (epoch seconds)
-- ARGV[2] retention (events kept in the stream)
-- ARGV[3] milliseconds an ended job's record and events are kept
-- ARGV[4] the page's url
-- Returns {'run', the job hash as HGETALL returns it} (the worker needs the job: one round trip, not two),
-- or {why the page must not run}: 'missing' (no such job), 'terminal' (the job ended), 'done' (its outcome
-- is already counted), 'cancelled' (counted out here).
local job, stream, done = KEYS[1], KEYS[2], KEYS[4]
local now, retention, url = ARGV[1], ARGV[2], ARGV[4]
local ending = ending_keys(KEYS, 3, ARGV[3])
local state = redis.call('HGET', job, 'state')
if not state then return {'missing'} end
if TERMINAL[state] then return {'terminal'} end
if redis.call('SISMEMBER', done, url) == 1 then return {'done'} end
if redis.call('HGET', job, 'cancel_requested') == '1' then
  redis.call('SADD', done, url)
  redis.call('HINCRBY', job, 'outstanding', -1)
  finalize_if_idle(job, stream, retention, now, ending)
  return {'cancelled'}
end
if state == 'QUEUED' then
  redis.call('HSET', job, 'state', 'RUNNING', 'started_at', now)
  emit(job, stream, retention, now, 'STATE_CHANGED', '', 'running', 0)
end
return {'run', redis.call('HGETALL', job)}
