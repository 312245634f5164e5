-- Ends a job's sweep (the task finish_page added once no page was outstanding: pages of the knowledge base
-- the crawl did not reach, now reserved and sent as pages of their own) and ends the job when nothing else
-- is outstanding. Safe to repeat: only a sweep still 'running' is ended. Runs after lib.lua.
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
-- Returns the state this ended the job in, or ''.
local job, stream = KEYS[1], KEYS[2]
local now, retention = ARGV[1], ARGV[2]
local ending = ending_keys(KEYS, 3, ARGV[3])
local state = redis.call('HGET', job, 'state')
if not state or TERMINAL[state] then return '' end
if redis.call('HGET', job, 'sweep') ~= 'running' then return '' end
redis.call('HSET', job, 'sweep', 'done')
redis.call('HINCRBY', job, 'outstanding', -1)
local final = finalize_if_idle(job, stream, retention, now, ending)
return final or ''
