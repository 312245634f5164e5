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
-- ARGV[5] outcome: 'indexed', 'skipped', 'failed', or one of an incremental crawl's: 'added', 'updated',
--         'unchanged', 'removed' (each counted in pages_done and in its own pages_<outcome>)
-- ARGV[6] detail (why it was skipped or failed; may be '')
-- ARGV[7] chunks indexed from the page
-- ARGV[8] '1' when the page is the seed, else '0'
-- ARGV[9] '1' when the job may sweep: once no page is outstanding, a crawl that was neither cancelled nor
--         cut by max_pages, and whose seed page was not skipped or failed, is not ended but gets one more
--         outstanding task, its sweep (pages of the knowledge base it did not reach, fetched directly); the
--         job's `sweep` field then says 'running'
-- Returns {counted, final}: counted is 1, or 0 when the job is gone or ended or the outcome was already
-- counted (a redelivered message); final is the state this page ended the job in, 'SWEEP' when the caller
-- must send the sweep, or ''.
local job, stream, done = KEYS[1], KEYS[2], KEYS[4]
local now, retention, url, outcome, detail, chunks, is_seed =
  ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local ending = ending_keys(KEYS, 3, ARGV[3])
local state = redis.call('HGET', job, 'state')
if not state or TERMINAL[state] then return {0, ''} end
if redis.call('SADD', done, url) == 0 then return {0, ''} end
local counter = {indexed = 'pages_done', skipped = 'pages_skipped', failed = 'pages_failed',
  added = 'pages_done', updated = 'pages_done', unchanged = 'pages_done', removed = 'pages_done'}
local kind = {indexed = 'PAGE_INDEXED', skipped = 'PAGE_SKIPPED', failed = 'PAGE_FAILED',
  added = 'PAGE_INDEXED', updated = 'PAGE_INDEXED', unchanged = 'PAGE_UNCHANGED', removed = 'PAGE_REMOVED'}
local own = {added = 'pages_added', updated = 'pages_updated', unchanged = 'pages_unchanged',
  removed = 'pages_removed'}
redis.call('HINCRBY', job, counter[outcome], 1)
if own[outcome] then redis.call('HINCRBY', job, own[outcome], 1) end
redis.call('HINCRBY', job, 'chunks_indexed', chunks)
redis.call('HINCRBY', job, 'outstanding', -1)
redis.call('HSET', job, 'last_progress_at', now)
if is_seed == '1' and counter[outcome] ~= 'pages_done' then
  local what = outcome == 'failed' and 'the seed page failed: ' or 'the seed page was skipped: '
  redis.call('HSET', job, 'seed_error', what .. detail)
end
emit(job, stream, retention, now, kind[outcome], url, detail, chunks)
if ARGV[9] == '1' and tonumber(redis.call('HGET', job, 'outstanding')) == 0
    and redis.call('HGET', job, 'cancel_requested') ~= '1'
    and tonumber(redis.call('HGET', job, 'pages_beyond_max_pages') or '0') == 0
    and not redis.call('HGET', job, 'seed_error')
    and not redis.call('HGET', job, 'sweep') then
  redis.call('HSET', job, 'sweep', 'running')
  redis.call('HINCRBY', job, 'outstanding', 1)
  return {1, 'SWEEP'}
end
local final = finalize_if_idle(job, stream, retention, now, ending)
return {1, final or ''}
