-- Claims a page's content for the first page that had it, so duplicate pages are skipped.
-- KEYS[1] hashes hash      P:job:J:hashes (content hash -> url)
-- ARGV[1] the content hash
-- ARGV[2] the page's url
-- Returns the url that owns this content: ARGV[2], or the first page seen with it.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
