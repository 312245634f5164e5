-- Requests cancellation: a QUEUED job ends at once; a RUNNING one lets its in-flight pages finish and ends
-- when the last one is counted. Asking twice is a no-op. Runs after lib.lua.
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
-- Returns 'missing' (no such job), 'terminal' (the job already ended) or 'ok'.
local job, stream = KEYS[1], KEYS[2]
local now, retention = ARGV[1], ARGV[2]
local ending = ending_keys(KEYS, 3, ARGV[3])
local state = redis.call('HGET', job, 'state')
if not state then return 'missing' end
if TERMINAL[state] then return 'terminal' end
if redis.call('HGET', job, 'cancel_requested') == '1' then return 'ok' end
redis.call('HSET', job, 'cancel_requested', '1')
if state == 'QUEUED' then
  -- Nothing has started: end now; the seed message finds the job terminal and does nothing.
  redis.call('HSET', job, 'outstanding', 0)
else
  emit(job, stream, retention, now, 'STATE_CHANGED', '', 'cancel requested: in-flight pages finish', 0)
end
finalize_if_idle(job, stream, retention, now, ending)
return 'ok'
