-- Claims a page's content for the first page that had it, so duplicate pages are skipped; only while the job
-- runs (an ended job's scratch keys are gone and must not come back without a TTL).
-- KEYS[1] job hash         P:job:{J}
-- KEYS[2] hashes hash      P:job:{J}:hashes (content hash -> url)
-- ARGV[1] the content hash
-- ARGV[2] the page's url
-- Returns the url that owns this content: ARGV[2], or the first page seen with it (ARGV[2] when the job ended).
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'SUCCEEDED' or state == 'FAILED' or state == 'CANCELLED' then return ARGV[2] end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[2], ARGV[1])
