-- Counts a page's outcome exactly once in the job, writes its event, and ends the job when it was the last page
-- outstanding (the caller adds the page to the counters of all jobs when counted is 1). Runs after lib.lua.
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
-- ARGV[5] outcome: 'indexed', 'skipped' or 'failed'
-- ARGV[6] detail (why it was skipped or failed; may be '')
-- ARGV[7] chunks indexed from the page
-- ARGV[8] '1' when the page is the seed, else '0'
-- Returns {counted, final}: counted is 1, or 0 when the job is gone or ended or the outcome was already
-- counted (a redelivered message); final is the state this page ended the job in, or ''.
local job, stream, done = KEYS[1], KEYS[2], KEYS[4]
local now, retention, url, outcome, detail, chunks, is_seed =
  ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local ending = ending_keys(KEYS, 3, ARGV[3])
local state = redis.call('HGET', job, 'state')
if not state or TERMINAL[state] then return {0, ''} end
if redis.call('SADD', done, url) == 0 then return {0, ''} end
local counter = {indexed = 'pages_done', skipped = 'pages_skipped', failed = 'pages_failed'}
local kind = {indexed = 'PAGE_INDEXED', skipped = 'PAGE_SKIPPED', failed = 'PAGE_FAILED'}
redis.call('HINCRBY', job, counter[outcome], 1)
redis.call('HINCRBY', job, 'chunks_indexed', chunks)
redis.call('HINCRBY', job, 'outstanding', -1)
redis.call('HSET', job, 'last_progress_at', now)
if is_seed == '1' and outcome ~= 'indexed' then
  local what = outcome == 'failed' and 'the seed page failed: ' or 'the seed page was skipped: '
  redis.call('HSET', job, 'seed_error', what .. detail)
end
emit(job, stream, retention, now, kind[outcome], url, detail, chunks)
local final = finalize_if_idle(job, stream, retention, now, ending)
return {1, final or ''}
