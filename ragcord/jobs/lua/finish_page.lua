-- Counts a page's outcome exactly once, writes its event, and ends the job when it was the last page
-- outstanding. Runs after lib.lua.
-- KEYS[1] job hash         P:job:J
-- KEYS[2] event stream     P:job:J:events
-- KEYS[3] done set         P:job:J:done
-- ARGV[1] now (epoch seconds)
-- ARGV[2] retention (events kept in the stream)
-- ARGV[3] the page's url
-- ARGV[4] outcome: 'indexed', 'skipped' or 'failed'
-- ARGV[5] detail (why it was skipped or failed; may be '')
-- ARGV[6] chunks indexed from the page
-- ARGV[7] '1' when the page is the seed, else '0'
-- Returns {counted, final}: counted is 1, or 0 when the job is gone or ended or the outcome was already
-- counted (a redelivered message); final is the state this page ended the job in, or ''.
local job, stream, done = KEYS[1], KEYS[2], KEYS[3]
local now, retention, url, outcome, detail, chunks, is_seed =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
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
local final = finalize_if_idle(job, stream, retention, now)
return {1, final or ''}
